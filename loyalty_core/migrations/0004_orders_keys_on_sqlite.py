"""Orders' business key and member index, again, on SQLite.

On SQLite, 0002 rebuilt the ``orders`` table to add its columns, and the rebuild dropped the
unique index on (chain_id, source, txn_id) and the index on (member_id, occurred_at), which
PostgreSQL kept. Created here if missing: a no-op on PostgreSQL. A SQLite database that took
the same (source, txn_id) twice meanwhile refuses this step: keep the first order of each pair
(the lower id) and run ``loyalty migrate`` again.
"""
from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('loyalty', '0003_outbox_retention_index')]

    initial = False

    operations = [
        ops.RunSQL(
            [
                'CREATE UNIQUE INDEX IF NOT EXISTS "uid_orders_chain_i_4d7773" '
                'ON "orders" ("chain_id", "source", "txn_id")',
                'CREATE INDEX IF NOT EXISTS "idx_orders_member__ef2956" ON "orders" ("member_id", "occurred_at")',
            ],
        ),
    ]
