"""WeChat member cards held by users, with the totals last written to each."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0017_channels_and_member_sessions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MemberCard',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='member_cards', on_delete=OnDelete.RESTRICT)),
                ('channel', fields.ForeignKeyField('loyalty.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='cards', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', null=True, db_constraint=True, to_field='id', related_name='cards', on_delete=OnDelete.RESTRICT)),
                ('openid', fields.CharField(max_length=128)),
                ('card_id', fields.CharField(max_length=64)),
                ('code', fields.CharField(max_length=64)),
                ('active', fields.BooleanField(default=True)),
                ('synced_bonus', fields.BigIntField(null=True)),
                ('synced_balance', fields.BigIntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'member_cards', 'app': 'loyalty', 'unique_together': (('chain', 'card_id', 'code'),), 'indexes': [Index(fields=['chain_id', 'member_id']), Index(fields=['chain_id', 'channel_id', 'openid'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
