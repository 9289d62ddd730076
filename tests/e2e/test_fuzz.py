"""Schemathesis throws generated requests at every documented operation: none may answer 5xx."""
import asyncio
import sys
from pathlib import Path

ST = Path(sys.executable).with_name("st")


async def test_no_generated_request_makes_a_server_error(chain):
    base = str(chain.client.make_url("/"))
    process = await asyncio.create_subprocess_exec(
        str(ST), "run", base.rstrip("/") + "/openapi.json", "-H", f"Authorization: Bearer {chain.admin_key}",
        "--checks", "not_a_server_error", "--max-examples", "12", "--seed", "20261122", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-4000:]
    assert "passed" in report
