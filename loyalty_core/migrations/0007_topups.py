"""Stored-value top-ups: one row per (chain, store, topup_id), the business key a resend meets."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0006_open_lots_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Topup',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='topups', on_delete=OnDelete.RESTRICT)),
                ('store', fields.ForeignKeyField('loyalty.Store', source_field='store_id', db_constraint=True, to_field='id', related_name='topups', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='topups', on_delete=OnDelete.RESTRICT)),
                ('topup_id', fields.CharField(max_length=64)),
                ('amount', fields.BigIntField()),
                ('bonus', fields.BigIntField()),
                ('payment_method', fields.CharField(max_length=32)),
                ('entry_id', fields.BigIntField(null=True)),
                ('result', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'topups', 'app': 'loyalty', 'unique_together': (('chain', 'store', 'topup_id'),), 'indexes': [Index(fields=['member_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
