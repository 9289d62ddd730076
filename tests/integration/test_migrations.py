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
