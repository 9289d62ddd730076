"""Connected channels (a WeChat app, later marketplace shops; unique across chains) and mini-program
member sessions (a token kept as its hash, the WeChat account, the member once joined)."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0016_member_days')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Channel',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='channels', on_delete=OnDelete.RESTRICT)),
                ('platform', fields.CharField(max_length=16)),
                ('external_id', fields.CharField(max_length=64)),
                ('settings', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('secrets_enc', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'channels', 'app': 'loyalty', 'unique_together': (('platform', 'external_id'),), 'indexes': [Index(fields=['chain_id', 'platform'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MemberSession',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='member_sessions', on_delete=OnDelete.RESTRICT)),
                ('channel', fields.ForeignKeyField('loyalty.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', null=True, db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.RESTRICT)),
                ('token_hash', fields.CharField(max_length=64)),
                ('openid', fields.CharField(max_length=128)),
                ('unionid', fields.CharField(null=True, max_length=128)),
                ('session_key_enc', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'member_sessions', 'app': 'loyalty', 'unique_together': (('chain', 'token_hash'),), 'indexes': [Index(fields=['chain_id', 'channel_id', 'openid']), Index(fields=['chain_id', 'member_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
