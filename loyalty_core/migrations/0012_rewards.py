"""The points mall: rewards (a points price for a coupon of a template) and their redemptions."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0011_behavior_events')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Reward',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='rewards', on_delete=OnDelete.RESTRICT)),
                ('name', fields.CharField(max_length=100)),
                ('points', fields.BigIntField()),
                ('template', fields.ForeignKeyField('loyalty.CouponTemplate', source_field='template_id', db_constraint=True, to_field='id', related_name='rewards', on_delete=OnDelete.RESTRICT)),
                ('stock', fields.BigIntField(null=True)),
                ('redeemed', fields.BigIntField(default=0)),
                ('per_member_limit', fields.IntField(null=True)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'rewards', 'app': 'loyalty', 'unique_together': (('chain', 'name'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RewardRedemption',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='reward_redemptions', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='reward_redemptions', on_delete=OnDelete.RESTRICT)),
                ('reward', fields.ForeignKeyField('loyalty.Reward', source_field='reward_id', db_constraint=True, to_field='id', related_name='redemptions', on_delete=OnDelete.RESTRICT)),
                ('key', fields.CharField(max_length=200)),
                ('points', fields.BigIntField()),
                ('coupon_code', fields.CharField(max_length=32)),
                ('result', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'reward_redemptions', 'app': 'loyalty', 'unique_together': (('chain', 'key'),), 'indexes': [Index(fields=['chain_id', 'member_id', 'reward_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
