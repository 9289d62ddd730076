"""A member closed by a merge points to the member who holds everything now."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0012_rewards')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Member',
            name='merged_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Member',
            name='merged_into',
            field=fields.BigIntField(null=True),
        ),
    ]
