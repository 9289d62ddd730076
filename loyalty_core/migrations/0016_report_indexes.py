"""Indexes for the activity report: a chain's journal entries by occurred_at (member orders are
journal entries too, so active members and repeat rates come from the same index)."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0015_segments')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='JournalEntry',
            index=Index(fields=['chain_id', 'occurred_at']),
        ),
    ]
