"""`loyalty import members FILE.csv --chain ID` as an operator runs it, checked the way they would
check it afterwards: members found by phone over the admin API, their balances, tier and ledger,
the report of rows not imported, a rerun after an interruption, and `loyalty verify`."""
from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from loyalty_core.clock import Clock
from loyalty_core.crypto import Vault
from loyalty_core.imports import ImportOptions, import_file
from loyalty_core.models import Identity, Member
from loyalty_core.verify import verify
from tests.conftest import SECRET

from ..helpers import adjustment, ledger_items, problem

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
HEADER = "phone,name,birthday,card_no,store_code,tier,points,growth,stored_value,stored_value_bonus,joined_at"
PROGRAM = {
    "behaviors": {"register": {"points": 100}},
    "points": {"expiry": {"mode": "rolling_months", "months": 12}},
    "tiers": {"levels": [{"code": "regular", "name": "普通会员", "threshold": 0},
                         {"code": "silver", "name": "银卡", "threshold": 1000},
                         {"code": "gold", "name": "金卡", "threshold": 5000}]},
}


async def loyalty(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    process = await asyncio.create_subprocess_exec(LOYALTY, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()


def write(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def report(path: Path) -> list[dict]:
    with open(path.with_name(path.name + ".report.csv"), encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


async def found(kit, phone: str) -> list[dict]:
    response = await kit.admin("GET", f"/v1/members?phone={phone}")
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


def phones(count: int, start: int = 0) -> list[str]:
    return [f"1390000{n:04d}" for n in range(start, start + count)]


async def test_members_land_with_their_balances_tier_card_and_the_welcome_once(chain, database_url, tmp_path):
    await chain.set_program(PROGRAM)
    known = await chain.new_member("13800000001")  # a member already: welcomed at registration
    erased = await chain.new_member("13800000002")  # erased since: the phone joins again, never welcomed again
    assert (await chain.admin("DELETE", f"/v1/members/{erased['id']}")).status == 204
    source = write(tmp_path / "members.csv",
                   "13800000001,Known Again,,,,,999,,,,",
                   "13800000002,王芳,,,,,,,,,",
                   "13800000003,张三,1990-01-02,VIP-0003,S01,gold,500,1200,10000,500,2019-05-01",
                   "13800000004,,,,,silver,,6000,,,",
                   "13800000005,\"Li, Lei\",,,,,,,,,2021-03-04T10:00:00+08:00")
    code, out, err = await loyalty(database_url, "import", "members", str(source), "--chain", str(chain.chain_id))
    assert code == 0, out + err
    assert "imported:                 4" in out and "skipped (members already): 1" in out
    assert "welcome points given to:  3" in out

    # the existing member is untouched
    assert (await chain.member(known["id"]))["balances"]["points"] == 100
    assert [row["line"] for row in report(source)] == ["2"]
    assert report(source)[0]["outcome"] == "skipped" and "already a member" in report(source)[0]["reason"]

    # the erased member's phone joins again as a new member, without a second welcome
    [again] = await found(chain, "13800000002")
    assert again["id"] != erased["id"] and again["name"] == "王芳" and again["balances"]["points"] == 0
    assert await ledger_items(chain, again["id"]) == []

    [zhang] = await found(chain, "13800000003")
    assert (zhang["name"], zhang["birthday"], zhang["card_no"], zhang["store_code"]) == (
        "张三", "1990-01-02", "VIP-0003", "S01")
    assert zhang["phone"] == "138****0003"
    assert {"channel": "card", "external_id": "VIP-0003"} in zhang["identities"]
    assert zhang["balances"] == {"points": 600, "pending_points": 0, "growth": 1300, "stored_value": 10500,
                                 "stored_value_principal": 10000, "stored_value_bonus": 500}
    assert zhang["tier"]["code"] == "gold"  # as the file says, above what 1300 growth earns
    assert zhang["created_at"].startswith("2019-04-30T16:00:00")  # joined 2019-05-01 in Shanghai
    entries = await ledger_items(chain, zhang["id"])
    assert [(e["kind"], e["channel"]) for e in entries] == [("import", "import"), ("behavior", "import")]
    assert entries[0]["changes"] == {"points": 500, "growth": 1200, "sv_principal": 10000, "sv_bonus": 500}
    assert entries[1]["changes"] == {"points": 100, "growth": 100}

    [silver] = await found(chain, "13800000004")
    assert silver["tier"]["code"] == "gold"  # 6100 growth earns gold: the file's silver is a floor
    assert silver["tier"]["progress"]["current"] == 6100
    assert silver["card_no"].startswith("9") and len(silver["card_no"]) == 12
    [li] = await found(chain, "13800000005")
    assert li["name"] == "Li, Lei" and li["tier"]["code"] == "regular"

    # imported points are points: they can be spent, and found at the till by phone and card
    assert (await adjustment(chain, zhang["id"], -600)).status == 201
    for code_read in ("13800000003", "VIP-0003"):
        scan = await chain.pos("POST", "/v1/pos/scan", {"code": code_read})
        assert (await scan.json())["member"]["id"] == zhang["id"]
    assert await verify() == []
    code, out, _ = await loyalty(database_url, "verify")
    assert code == 0 and "0 differences" in out


async def test_bad_rows_are_reported_by_line_and_the_rest_lands(chain, database_url, tmp_path):
    await chain.set_program(PROGRAM)
    source = tmp_path / "members.csv"
    source.write_bytes(("\n".join([
        HEADER,
        "13900000001,Good,,,,,10,,,,",
        "1390000000２,full-width digit,,,,,,,,,",
        " 13900000003,leading space,,,,,,,,,",
        "13900000004,\"a name that spans\ntwo lines\",,,,,,,,,",  # lines 5-6: a quoted newline is one row
        "13900000016,\"bad and\nspanning\",1990-13-01,,,,,,,,",  # lines 7-8: reported at line 7
        "13900000005,bad birthday,1990-02-30,,,,,,,,",
        "13900000006,bad points,,,,,-5,,,,",
        "13900000007,no such store,,,NOPE,,,,,,",
        "13900000008,no such tier,,,,platinum,,,,,",
        "13900000009,too few fields",
        "",
        "13900000010,card,,CARD-1,,,,,,,",
        "13900000011,same card,,CARD-1,,,,,,,",
        "13900000010,same phone,,,,,,,,,",
        "13900000012,future,,,,,,,,,2999-01-01",
        "13900000013,bad stored value,,,,,,,1.5,,",
    ]) + "\n").encode() + b"13900000014,\xff\xfe not utf-8,,,,,,,,,\n" + b"13900000015,Last,,,,,,,,,\n")
    code, out, err = await loyalty(database_url, "import", "members", str(source), "--chain", str(chain.chain_id))
    assert code == 1, out + err  # finished, with rejected rows
    assert "imported:                 4" in out and "rejected (bad rows):      12" in out
    rows = {int(r["line"]): (r["outcome"], r["field"]) for r in report(source)}
    assert rows == {3: ("rejected", "phone"), 4: ("rejected", "phone"), 7: ("rejected", "birthday"),
                    9: ("rejected", "birthday"), 10: ("rejected", "points"), 11: ("rejected", "store_code"),
                    12: ("rejected", "tier"), 13: ("rejected", "(row)"), 16: ("rejected", "card_no"),
                    17: ("skipped", "phone"), 18: ("rejected", "joined_at"), 19: ("rejected", "stored_value"),
                    20: ("rejected", "name")}
    reasons = {int(r["line"]): r["reason"] for r in report(source)}
    assert "line 15" in reasons[16] and "line 15" in reasons[17] and "utf-8" in reasons[20]
    for phone in ("13900000001", "13900000004", "13900000010", "13900000015"):
        assert len(await found(chain, phone)) == 1, phone
    [spans] = await found(chain, "13900000004")
    assert spans["name"] == "a name that spans\ntwo lines"
    assert len(await found(chain, "13900000011")) == 0
    assert await verify() == []


async def test_a_file_the_import_cannot_read_changes_nothing(chain, database_url, tmp_path):
    chain_id = str(chain.chain_id)
    for header, message in [("phone,name,points_balance", "unknown column 'points_balance'"),
                            ("name,points", "no phone column"), ("phone,name,Phone", "appears twice")]:
        source = write(tmp_path / "members.csv", "13900000001,x,1", header=header)
        code, out, err = await loyalty(database_url, "import", "members", str(source), "--chain", chain_id)
        assert code == 2 and message in err, err
    code, _, err = await loyalty(database_url, "import", "members", str(tmp_path / "nothing.csv"), "--chain", chain_id)
    assert code == 2 and "no file" in err
    source = write(tmp_path / "members.csv", "13900000001,x,,,,,,,,,")
    code, _, err = await loyalty(database_url, "import", "members", str(source), "--chain", "99999")
    assert code == 2 and "no chain 99999" in err
    assert await Member.filter(chain_id=chain.chain_id).count() == 0


async def test_a_row_the_database_refuses_is_reported_and_the_rest_of_its_batch_lands(chain, tmp_path):
    # A card identity with no member's card_no behind it (as a marketplace buyer's unclaimed
    # identity would be): only the unique constraint sees it, when the batch is written.
    await Identity.create(chain_id=chain.chain_id, member=None, channel="card", external_id="TAKEN-1")
    source = write(tmp_path / "members.csv", *[f"{p},,,{'TAKEN-1' if n == 2 else ''},,,5,,,," for n, p in
                                               enumerate(phones(5))])
    summary = await import_file(chain.chain_id, source, Vault(SECRET), Clock(), ImportOptions(batch_size=10))
    assert (summary.counts.imported, summary.counts.rejected) == (4, 1)
    assert [(r["line"], r["field"]) for r in report(source)] == [("4", "card_no")]
    assert [len(await found(chain, p)) for p in phones(5)] == [1, 1, 0, 1, 1]
    assert [(await found(chain, p))[0]["balances"]["points"] for p in phones(5) if p != phones(5)[2]] == [5] * 4
    assert await verify() == []


class Interrupted(Exception):
    pass


def stop_after(batches: int):
    seen = []

    def progress(at) -> None:
        seen.append(at.line)
        if len(seen) == batches:
            raise Interrupted(at.line)
    return progress


async def test_an_interrupted_import_resumes_after_its_checkpoint_without_duplicates(chain, tmp_path):
    await chain.set_program(PROGRAM)
    source = write(tmp_path / "members.csv", *[f"{p},M{n},,,,,{n},,,," for n, p in enumerate(phones(50))],
                   "bad,row,,,,,,,,,", *[f"{p},M{n},,,,,{n},,,," for n, p in enumerate(phones(49, 50), 50)])
    checkpoint = source.with_name("members.csv.checkpoint")
    vault, clock = Vault(SECRET), Clock()
    options = ImportOptions(batch_size=10, parallel=1)
    with pytest.raises(Interrupted):
        await import_file(chain.chain_id, source, vault, clock, options, stop_after(2))
    assert json.loads(checkpoint.read_text())["line"] == 21
    assert await Member.filter(chain_id=chain.chain_id).count() == 20
    shutil.copy(checkpoint, tmp_path / "at-21")

    with pytest.raises(Interrupted):  # the same command goes on after line 21
        await import_file(chain.chain_id, source, vault, clock, options, stop_after(4))
    assert json.loads(checkpoint.read_text())["line"] == 61
    assert await Member.filter(chain_id=chain.chain_id).count() == 59
    # As if it had died after committing lines 22-61 but before recording them: the checkpoint lags.
    shutil.copy(tmp_path / "at-21", checkpoint)

    summary = await import_file(chain.chain_id, source, vault, clock, options)
    assert summary.resumed and summary.first_line == 21 and summary.last_line == 101
    assert (summary.counts.imported, summary.counts.skipped, summary.counts.rejected) == (20 + 40, 39, 1)  # the 39 landed before are counted as skipped
    assert await Member.filter(chain_id=chain.chain_id).count() == 99
    for n, phone in enumerate(phones(99)):
        [member] = await found(chain, phone)
        assert member["balances"]["points"] == 100 + n, phone  # the welcome once, and the opening points once
    # the report is what the checkpoint had seen, then this run's rows: no line twice
    lines = [r["line"] for r in report(source)]
    assert len(lines) == len(set(lines)) and "52" in lines
    assert await verify() == []

    again = await import_file(chain.chain_id, source, vault, clock, options)  # done: nothing more happens
    assert again.already_done and await Member.filter(chain_id=chain.chain_id).count() == 99


async def test_a_changed_file_or_another_chain_does_not_resume_a_checkpoint(chain, other_chain, tmp_path):
    source = write(tmp_path / "members.csv", *[f"{p},,,,,,,,,," for p in phones(30)])
    vault, clock = Vault(SECRET), Clock()
    with pytest.raises(Interrupted):
        await import_file(chain.chain_id, source, vault, clock, ImportOptions(batch_size=10, parallel=1),
                          stop_after(1))
    from loyalty_core.imports import ImportRefused

    with pytest.raises(ImportRefused, match="chain"):
        await import_file(other_chain.chain_id, source, vault, clock, ImportOptions(batch_size=10))
    source.write_text(source.read_text().replace(phones(1)[0], "13700000000"))
    with pytest.raises(ImportRefused, match="changed before line"):
        await import_file(chain.chain_id, source, vault, clock, ImportOptions(batch_size=10))
    assert await Member.filter(chain_id=chain.chain_id).count() == 10


async def test_a_killed_import_run_again_lands_every_member_once(chain, database_url, tmp_path):
    await chain.set_program(PROGRAM)
    count = 3000
    source = write(tmp_path / "members.csv", *[f"{p},K{n},,,,,7,,,," for n, p in
                                               enumerate(f"1350{n:07d}" for n in range(count))])
    checkpoint = source.with_name("members.csv.checkpoint")
    env = {**os.environ, "DATABASE_URL": database_url, "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    args = [LOYALTY, "import", "members", str(source), "--chain", str(chain.chain_id), "--batch-size", "50"]
    child = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.DEVNULL)
    for _ in range(600):
        await asyncio.sleep(0.05)
        if checkpoint.exists() and json.loads(checkpoint.read_text())["line"] > 500:
            break
    child.send_signal(signal.SIGKILL)  # mid-batch, or between a commit and its checkpoint
    await child.wait()
    stopped_at = json.loads(checkpoint.read_text())["line"]
    assert stopped_at < count + 1, "the import finished before it could be killed"
    code, out, err = await loyalty(database_url, "import", "members", str(source), "--chain", str(chain.chain_id))
    assert code == 0, out + err
    assert "resumed from the checkpoint" in out
    assert await Member.filter(chain_id=chain.chain_id).count() == count
    for phone in (f"1350{n:07d}" for n in (0, stopped_at - 2, stopped_at - 1, stopped_at, count - 1)):
        [member] = await found(chain, phone)
        assert member["balances"]["points"] == 107
    assert await verify() == []


async def test_progress_goes_to_stderr_and_no_welcome_gives_none(chain, database_url, tmp_path):
    await chain.set_program(PROGRAM)
    source = write(tmp_path / "members.csv", *[f"{p},,,,,,,,,," for p in phones(30)])
    code, out, err = await loyalty(database_url, "import", "members", str(source), "--chain", str(chain.chain_id),
                                   "--batch-size", "10", "--no-welcome", "--report", str(tmp_path / "bad.csv"),
                                   "--checkpoint", str(tmp_path / "at"))
    assert code == 0, out + err
    assert "30/30 rows 100.0%" in err and "rows/s" in err and "ETA" in err  # not a TTY: plain lines
    assert "welcome points given to:  0" in out and str(tmp_path / "bad.csv") in out
    assert (tmp_path / "at").exists() and (tmp_path / "bad.csv").read_text().startswith("line,outcome")
    assert [(await found(chain, p))[0]["balances"]["points"] for p in phones(3)] == [0, 0, 0]


async def test_chains_are_imported_apart(chain, other_chain, database_url, tmp_path):
    await chain.set_program(PROGRAM)
    await other_chain.set_program(PROGRAM)
    rows = [f"{p},,,SHARED-{n},,,20,,,," for n, p in enumerate(phones(3))]
    for kit in (chain, other_chain):
        source = write(tmp_path / f"chain-{kit.chain_id}.csv", *rows)
        code, out, err = await loyalty(database_url, "import", "members", str(source), "--chain", str(kit.chain_id))
        assert code == 0, out + err
        assert "imported:                 3" in out  # the same phones and cards, another chain
    for kit, other in ((chain, other_chain), (other_chain, chain)):
        [member] = await found(kit, phones(1)[0])
        assert member["balances"]["points"] == 120  # welcomed in each chain
        await problem(await other.admin("GET", f"/v1/members/{member['id']}"), 404, "not_found")
    assert await verify() == []
