"""Every unique key includes ``chain_id``, so that the schema distributes by chain on Citus
(docs/scaling.md). Four keys lacked it; each gets ``chain_id`` as its last column, so that its
index still serves every query that used the old one:

- ``accounts`` (member_id, kind) -> (member_id, kind, chain_id)
- ``refunds`` (order_id, refund_id) -> (order_id, refund_id, chain_id)
- ``terminals`` (store_id, code) -> (store_id, code, chain_id)
- ``outbox_events`` (event_id) -> (event_id, chain_id)

A member, an order and a store belong to one chain, so each new key accepts exactly the rows
the old one did. ``terminals.terminal_id`` and ``admin_keys.key_hash`` stay unique on their
own: a credential is looked up before its chain is known (both tables are reference tables on
Citus, where that is allowed).

The Tortoise operations below only record the new keys in the migration state; one operation
changes the database, in one transaction:

- PostgreSQL: each new key is a constraint over a unique index of the same name, built here
  unless it exists already (on a large database, build it first with ``CREATE UNIQUE INDEX
  CONCURRENTLY`` under that name, see docs/scaling.md), then the old key is dropped.
- SQLite keeps these four keys inside ``CREATE TABLE``, where no ALTER reaches them: each table
  is rebuilt without its old key (SQLite's documented 12-step procedure: foreign keys off, new
  table, copy, drop, rename, its indexes and AUTOINCREMENT counter restored, foreign keys
  checked), and the new key is created as an index. ``postings`` refers to ``accounts``, which
  is why foreign keys must be off while ``accounts`` is replaced (and why this migration is not
  atomic as a whole: SQLite ignores ``PRAGMA foreign_keys`` inside a transaction).
"""
import re

from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint
from tortoise.transactions import in_transaction

# table, the old key's name (as 0001 created it) and columns, the new key's columns
KEYS = [
    ("accounts", "uid_accounts_member__7a86fa", ("member_id", "kind"), ("member_id", "kind", "chain_id")),
    ("refunds", "uid_refunds_order_i_84522a", ("order_id", "refund_id"), ("order_id", "refund_id", "chain_id")),
    ("terminals", "uid_terminals_store_i_4351b4", ("store_id", "code"), ("store_id", "code", "chain_id")),
    ("outbox_events", "outbox_events_event_id_key", ("event_id",), ("event_id", "chain_id")),
]


class StateOnly(ops.TortoiseOperation):
    """A Tortoise operation's effect on the migration state, without its schema change (made by
    ``ChainInUniqueKeys`` for every database)."""

    def __init__(self, operation: ops.TortoiseOperation) -> None:
        self.operation = operation

    def describe(self) -> str:
        return f"{self.operation.describe()} (state only)"

    def state_forward(self, app_label, state) -> None:
        self.operation.state_forward(app_label, state)


def _quoted(columns) -> str:
    return ", ".join(f'"{column}"' for column in columns)


class ChainInUniqueKeys(ops.TortoiseOperation):
    def describe(self) -> str:
        return "chain_id in every unique key"

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor is None:
            return
        client = state_editor.client
        names = {table: state_editor._generate_index_name_for_table("uid", table, list(new))
                 for table, _, _, new in KEYS}
        if client.capabilities.dialect == "postgres":
            async with in_transaction(client.connection_name) as connection:
                for table, old_name, _, new in KEYS:
                    name = names[table]
                    await connection.execute_script(
                        f'CREATE UNIQUE INDEX IF NOT EXISTS "{name}" ON "{table}" ({_quoted(new)});'
                        f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" UNIQUE USING INDEX "{name}";'
                        f'ALTER TABLE "{table}" DROP CONSTRAINT "{old_name}"')
            return
        if client.capabilities.dialect != "sqlite":
            raise NotImplementedError(f"0005 knows PostgreSQL and SQLite, not {client.capabilities.dialect}")
        await client.execute_script("PRAGMA foreign_keys = OFF")
        try:
            async with in_transaction(client.connection_name) as connection:
                for table, old_name, old, new in KEYS:
                    await _rebuild_sqlite(connection, table, old_name, old)
                    await connection.execute_query(f'CREATE UNIQUE INDEX "{names[table]}" ON "{table}" ({_quoted(new)})')
                broken = await connection.execute_query_dict("PRAGMA foreign_key_check")
                if broken:
                    raise RuntimeError(f"0005: foreign keys broken by the rebuild: {broken[:5]}")
        finally:
            await client.execute_script("PRAGMA foreign_keys = ON")


async def _rebuild_sqlite(connection, table: str, old_name: str, old: tuple[str, ...]) -> None:
    """``table`` again, without its old unique key: same columns, rows, indexes and counter."""
    found = await connection.execute_query_dict(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table])
    create = found[0]["sql"]
    if len(old) == 1:  # a column's own UNIQUE: "event_id" VARCHAR(36) NOT NULL UNIQUE
        pattern = rf'("{old[0]}" [^,]*?) UNIQUE\b'
        replacement = r"\1"
    else:  # a table constraint: , CONSTRAINT "uid_..." UNIQUE ("member_id", "kind")
        pattern = rf',\s*CONSTRAINT "{old_name}" UNIQUE \({re.escape(_quoted(old))}\)'
        replacement = ""
    without, count = re.subn(pattern, replacement, create)
    renamed, named = re.subn(rf'^CREATE TABLE "{table}"', f'CREATE TABLE "new__{table}"', without)
    if count != 1 or named != 1:
        raise RuntimeError(f"0005: {table}'s CREATE TABLE is not the one expected: {create}")
    indexes = await connection.execute_query_dict(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", [table])
    counter = await connection.execute_query_dict("SELECT seq FROM sqlite_sequence WHERE name = ?", [table])
    await connection.execute_query(renamed)
    await connection.execute_query(f'INSERT INTO "new__{table}" SELECT * FROM "{table}"')
    await connection.execute_query(f'DROP TABLE "{table}"')
    await connection.execute_query(f'ALTER TABLE "new__{table}" RENAME TO "{table}"')
    for index in indexes:
        await connection.execute_query(index["sql"])
    if counter:
        await connection.execute_query("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?",
                                       [counter[0]["seq"], table])


class Migration(migrations.Migration):
    dependencies = [('loyalty', '0004_orders_keys_on_sqlite')]

    initial = False
    atomic = False  # ChainInUniqueKeys runs its own transaction (see the docstring)

    operations = [
        StateOnly(ops.AddConstraint(
            model_name='Account',
            constraint=UniqueConstraint(fields=('member', 'kind', 'chain'), name=None),
        )),
        StateOnly(ops.RemoveConstraint(
            model_name='Account',
            name=None,
            fields=['member', 'kind'],
        )),
        StateOnly(ops.AlterField(
            model_name='OutboxEvent',
            name='event_id',
            field=fields.CharField(max_length=36),
        )),
        StateOnly(ops.AddConstraint(
            model_name='OutboxEvent',
            constraint=UniqueConstraint(fields=('event_id', 'chain'), name=None),
        )),
        StateOnly(ops.AddConstraint(
            model_name='Refund',
            constraint=UniqueConstraint(fields=('order', 'refund_id', 'chain'), name=None),
        )),
        StateOnly(ops.RemoveConstraint(
            model_name='Refund',
            name=None,
            fields=['order', 'refund_id'],
        )),
        StateOnly(ops.AddConstraint(
            model_name='Terminal',
            constraint=UniqueConstraint(fields=('store', 'code', 'chain'), name=None),
        )),
        StateOnly(ops.RemoveConstraint(
            model_name='Terminal',
            name=None,
            fields=['store', 'code'],
        )),
        ChainInUniqueKeys(),
    ]
