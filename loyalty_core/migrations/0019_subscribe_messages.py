"""WeChat subscribe messages: each account's consent per template, one row per message sent
(the dedupe of a resent event), and when a lot's member was warned that it expires soon.

``idx_points_lots_unwarned`` holds the open lots nobody was warned of yet, by expiry: the
warning job's scan reads only lots about to expire and not yet announced, whatever the history
(a partial index, like migration 0006's, which the models cannot declare).
"""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0018_member_cards')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MessageSend',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='message_sends', on_delete=OnDelete.RESTRICT)),
                ('channel', fields.ForeignKeyField('loyalty.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='message_sends', on_delete=OnDelete.RESTRICT)),
                ('event_id', fields.CharField(max_length=36)),
                ('openid', fields.CharField(max_length=128)),
                ('kind', fields.CharField(max_length=32)),
                ('template_id', fields.CharField(max_length=128)),
                ('status', fields.CharField(max_length=16)),
                ('errcode', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'message_sends', 'app': 'loyalty', 'unique_together': (('chain', 'event_id', 'channel', 'openid'),), 'indexes': [Index(fields=['created_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MessageSubscription',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='message_subscriptions', on_delete=OnDelete.RESTRICT)),
                ('channel', fields.ForeignKeyField('loyalty.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='subscriptions', on_delete=OnDelete.RESTRICT)),
                ('openid', fields.CharField(max_length=128)),
                ('template_id', fields.CharField(max_length=128)),
                ('status', fields.CharField(max_length=16)),
                ('remaining', fields.IntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'message_subscriptions', 'app': 'loyalty', 'unique_together': (('chain', 'channel', 'openid', 'template_id'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='PointsLot',
            name='warned_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.RunSQL(
            ['CREATE INDEX IF NOT EXISTS "idx_points_lots_unwarned" ON "points_lots" ("chain_id", "expires_at", "id") '
             'WHERE "remaining" > 0 AND "warned_at" IS NULL AND "expires_at" IS NOT NULL'],
            reverse_sql=['DROP INDEX IF EXISTS "idx_points_lots_unwarned"'],
        ),
    ]
