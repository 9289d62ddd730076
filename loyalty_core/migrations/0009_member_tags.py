"""Member tags, one row each, searched by (chain, tag)."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0008_coupons')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MemberTag',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='member_tags', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='tag_rows', on_delete=OnDelete.RESTRICT)),
                ('tag', fields.CharField(max_length=32)),
            ],
            options={'table': 'member_tags', 'app': 'loyalty', 'unique_together': (('chain', 'member', 'tag'),), 'indexes': [Index(fields=['chain_id', 'tag', 'member_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
