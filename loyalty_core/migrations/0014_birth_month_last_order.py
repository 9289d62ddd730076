"""A member's birth month in clear (for the birthday job) and the latest order's time in the lifetime figures
(recency, winback). Members registered before keep no birth month until they are registered or imported again."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0013_member_merge')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Member',
            name='birth_month',
            field=fields.IntField(null=True),
        ),
        ops.AddIndex(
            model_name='Member',
            index=Index(fields=['chain_id', 'birth_month']),
        ),
        ops.AddField(
            model_name='MemberFigure',
            name='last_order_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='MemberFigure',
            index=Index(fields=['chain_id', 'period', 'last_order_at']),
        ),
    ]
