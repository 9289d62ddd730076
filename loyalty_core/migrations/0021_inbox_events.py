"""Marketplace events as they came, kept before they are applied: the inbox (loyalty_core/inbox.py)."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0020_webhook_subscriptions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='InboxEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='inbox', on_delete=OnDelete.RESTRICT)),
                ('channel', fields.ForeignKeyField('loyalty.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='inbox', on_delete=OnDelete.RESTRICT)),
                ('event_id', fields.CharField(max_length=128)),
                ('kind', fields.CharField(max_length=16)),
                ('order_key', fields.CharField(max_length=128)),
                ('buyer_key', fields.CharField(null=True, max_length=128)),
                ('status', fields.CharField(max_length=16)),
                ('reason', fields.CharField(null=True, max_length=300)),
                ('event', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ('body', fields.TextField(unique=False)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('applied_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'inbox_events', 'app': 'loyalty', 'unique_together': (('chain', 'channel', 'event_id'),), 'indexes': [Index(fields=['chain_id', 'channel_id', 'order_key']), Index(fields=['chain_id', 'channel_id', 'buyer_key']), Index(fields=['chain_id', 'status', 'next_attempt_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
