"""Members that hold the points of a marketplace buyer who is no member yet (``members.unclaimed``,
loyalty_core/joining.py ``holder``)."""
from tortoise import fields, migrations
from tortoise.migrations import operations as ops

ADD_COLUMN = 'ALTER TABLE "members" ADD COLUMN "unclaimed" BOOL NOT NULL DEFAULT FALSE'


class AddFieldWithDefault(ops.AddField):
    """``AddField``, with the column's default in the database as well: Tortoise writes none for
    ``False``, so SQLite would refuse a NOT NULL column, and the inserts that name no value for it
    (the member import's) would fail on PostgreSQL."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor:
            await state_editor._run_sql(ADD_COLUMN)


class Migration(migrations.Migration):
    dependencies = [('loyalty', '0021_inbox_events')]

    initial = False

    operations = [
        AddFieldWithDefault(
            model_name='Member',
            name='unclaimed',
            field=fields.BooleanField(default=False),
        ),
    ]
