"""Daily roll-ups per member and channel (orders, points issued, redeemed, expired) for the activity report."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0015_segments')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MemberDay',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='member_days', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='days', on_delete=OnDelete.RESTRICT)),
                ('day', fields.IntField()),
                ('channel', fields.CharField(max_length=32)),
                ('orders', fields.BigIntField(default=0)),
                ('points_issued', fields.BigIntField(default=0)),
                ('points_redeemed', fields.BigIntField(default=0)),
                ('points_expired', fields.BigIntField(default=0)),
            ],
            options={'table': 'member_days', 'app': 'loyalty', 'unique_together': (('chain', 'member', 'day', 'channel'),), 'indexes': [Index(fields=['chain_id', 'day'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
