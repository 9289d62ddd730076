"""The committed migrations describe the models exactly: a model change without `make migrations` fails."""
import asyncio
import sys
import textwrap

CHECK = textwrap.dedent("""
    import asyncio
    from tortoise.context import TortoiseContext
    from tortoise.migrations.autodetector import MigrationAutodetector
    from gateway.settings import tortoise_config

    async def main():
        config = tortoise_config("sqlite://:memory:")
        async with TortoiseContext() as ctx:
            await ctx.init(config=config)
            changes = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
        for writer in changes:
            print("pending:", writer.app_label, [type(op).__name__ for op in writer.operations])
        raise SystemExit(1 if changes else 0)

    asyncio.run(main())
""")


async def test_models_and_migrations_agree():
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", CHECK, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, "models changed without a migration (run `make migrations`):\n" + output.decode()


async def _unique_indexes(connection) -> set[tuple[str, tuple[str, ...]]]:
    """(table, columns) of every unique index the migrated database really has."""
    found = set()
    if connection.capabilities.dialect == "postgres":
        rows = await connection.execute_query_dict(
            "SELECT t.relname AS tbl, array_agg(a.attname ORDER BY k.n) AS cols FROM pg_index i "
            "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace s ON s.oid = t.relnamespace "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
            "WHERE i.indisunique AND s.nspname = 'public' GROUP BY i.indexrelid, t.relname")
        return {(row["tbl"], tuple(row["cols"])) for row in rows}
    tables = await connection.execute_query_dict("SELECT name FROM sqlite_master WHERE type = 'table'")
    for table in (row["name"] for row in tables):
        for index in await connection.execute_query_dict(f'PRAGMA index_list("{table}")'):
            if index["unique"]:
                columns = await connection.execute_query_dict(f'PRAGMA index_info("{index["name"]}")')
                found.add((table, tuple(c["name"] for c in sorted(columns, key=lambda c: c["seqno"]))))
    return found


async def test_every_unique_key_of_the_models_is_in_the_migrated_database(client):
    """On SQLite, a table rebuilt by a migration once lost the orders' business key, so a resent
    sale could commit twice; every declared unique key must exist on both databases."""
    from tortoise import Tortoise

    real = await _unique_indexes(Tortoise.get_connection("default"))
    declared = set()
    for model in Tortoise.apps["loyalty"].values():
        meta = model._meta
        for fields in meta.unique_together:
            declared.add((meta.db_table, tuple(meta.fields_map[f].source_field or f for f in fields)))
        for name, field in meta.fields_map.items():
            if field.unique and not field.pk and field.source_field is None and name in meta.db_fields:
                declared.add((meta.db_table, (name,)))
    assert declared - real == set()
