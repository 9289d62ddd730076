"""A member card keeps the change its last write added (add_bonus, add_balance), to tell WeChat's
update_member_card push of our own write from a change made elsewhere."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0022_unclaimed_members')]

    initial = False

    operations = [
        ops.AddField(
            model_name='MemberCard',
            name='added_balance',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='MemberCard',
            name='added_bonus',
            field=fields.BigIntField(null=True),
        ),
    ]
