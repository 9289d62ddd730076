from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MemberFigure',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='figures', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='figures', on_delete=OnDelete.RESTRICT)),
                ('period', fields.IntField()),
                ('growth', fields.BigIntField(default=0)),
                ('points_earned', fields.BigIntField(default=0)),
                ('spend', fields.BigIntField(default=0)),
                ('stored_value', fields.BigIntField(default=0)),
                ('orders', fields.BigIntField(default=0)),
            ],
            options={'table': 'member_figures', 'app': 'loyalty', 'unique_together': (('chain', 'member', 'period'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='IdempotencyRecord',
            name='token',
            field=fields.CharField(default='', max_length=32),
        ),
        ops.AlterField(
            model_name='Order',
            name='member_code',
            field=fields.CharField(null=True, max_length=48),
        ),
        ops.AddField(
            model_name='Order',
            name='period',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Order',
            name='received_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Order',
            name='tier_after',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name='Order',
            name='tier_before',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddConstraint(
            model_name='Order',
            constraint=UniqueConstraint(fields=('chain', 'member_code'), name=None),
        ),
        ops.AddField(
            model_name='PointsLot',
            name='order',
            field=fields.ForeignKeyField('loyalty.Order', source_field='order_id', null=True, db_constraint=True, to_field='id', related_name='lots', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddIndex(
            model_name='PointsLot',
            index=Index(fields=['order_id']),
        ),
        ops.AddField(
            model_name='Terminal',
            name='revoked_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
