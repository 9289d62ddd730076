"""Behaviour events: check-ins, reviews, shares, completed profiles and invites, each under its cause key."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0010_reviews')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BehaviorEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='behavior_events', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='behavior_events', on_delete=OnDelete.RESTRICT)),
                ('behavior', fields.CharField(max_length=16)),
                ('key', fields.CharField(max_length=200)),
                ('day', fields.IntField()),
                ('month', fields.IntField()),
                ('streak', fields.IntField(default=0)),
                ('points', fields.BigIntField(default=0)),
                ('ref', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'behavior_events', 'app': 'loyalty', 'unique_together': (('chain', 'key'),), 'indexes': [Index(fields=['chain_id', 'member_id', 'behavior', 'day'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
