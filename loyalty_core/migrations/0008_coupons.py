"""Coupons: templates (with the count issued, for their stock) and the coupons members hold."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0007_topups')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CouponTemplate',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='coupon_templates', on_delete=OnDelete.RESTRICT)),
                ('name', fields.CharField(max_length=100)),
                ('kind', fields.CharField(max_length=16)),
                ('amount_off', fields.BigIntField(default=0)),
                ('percent_off', fields.IntField(default=0)),
                ('max_off', fields.BigIntField(null=True)),
                ('sku', fields.CharField(null=True, max_length=64)),
                ('min_spend', fields.BigIntField(default=0)),
                ('valid_days', fields.IntField(null=True)),
                ('valid_from', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('valid_to', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('stock', fields.BigIntField(null=True)),
                ('issued', fields.BigIntField(default=0)),
                ('per_member_limit', fields.IntField(null=True)),
                ('stackable', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'coupon_templates', 'app': 'loyalty', 'unique_together': (('chain', 'name'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Coupon',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('template', fields.ForeignKeyField('loyalty.CouponTemplate', source_field='template_id', db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('code', fields.CharField(max_length=32)),
                ('issue_key', fields.CharField(max_length=200)),
                ('status', fields.CharField(default='issued', max_length=16)),
                ('valid_from', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('valid_to', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('order_id', fields.BigIntField(null=True)),
                ('redeemed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('issued_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'coupons', 'app': 'loyalty', 'unique_together': (('chain', 'code'), ('chain', 'issue_key')), 'indexes': [Index(fields=['member_id', 'status', 'valid_to']), Index(fields=['order_id']), Index(fields=['template_id', 'member_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
