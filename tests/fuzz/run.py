"""``make fuzz``: schemathesis against a throwaway gateway, with every auth scheme.

Starts ``loyalty serve`` on a free loopback port over a new SQLite database in a temporary
directory (``LOYALTY_SECRET`` set, the in-process Redis stand-in), creates a chain with
``loyalty chain create``, a store, a terminal and two members through the admin API, then runs
``st run`` with ``tests.fuzz.hooks`` (owner key on admin routes, terminal signature on
``/v1/pos/*``). The number of requests is read from the gateway's own ``/metrics`` counter,
before and after; then ``loyalty verify`` recomputes every balance from the journal. Exit
status: non-zero when schemathesis found anything, when the gateway answered any 5xx, when the
ledger does not add up, or when fewer than ``--min-requests`` requests were made.

    python -m tests.fuzz.run [--max-examples 250] [--seed 20261122] [--min-requests 5000]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

from tests.fakes.wechat import FakeWeChat, InThread

ROOT = Path(__file__).resolve().parents[2]
MAX_FEN, MAX_QTY = 10_000_000_000, 1_000_000  # API.md, Conventions: Bounds
BIN = Path(sys.executable).parent
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
# Operations left out of every run: logging out would revoke the member token every later /v1/mp/*
# request carries (tests/wechat/test_mp_login.py tests it).
UNFUZZED = {"mp_logout": ("DELETE", "/v1/mp/session")}


def st_command(schema_url: str, *, max_examples: int, seed: int, workers: int = 1, checks: str = CHECKS,
               phases: str = "examples,coverage,fuzzing,stateful", max_time: int | None = None,
               report_dir: str | None = None, reports: str = "json") -> list[str]:
    """The ``st run`` command line both profiles share (the short one runs inside pytest)."""
    command = [str(BIN / "st"), "run", schema_url, "--checks", checks, "--max-examples", str(max_examples),
               "--seed", str(seed), "--workers", str(workers), "--phases", phases, "--no-color",
               "--request-timeout", "30", "--generation-database", "none", "--suppress-health-check", "all"]
    for operation_id in UNFUZZED:
        command += ["--exclude-operation-id", operation_id]
    if max_time is not None:
        command += ["--max-time", str(max_time)]
    if report_dir is not None:
        command += ["--report", reports, "--report-dir", report_dir]
    return command


def st_env(admin_key: str, terminal_id: str, terminal_secret: str, admin_key_id: int,
           seeded: dict[str, list], member_token: str = "") -> dict[str, str]:
    """The environment ``tests.fuzz.hooks`` reads its credentials and seeded values from."""
    return {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "LOYALTY_FUZZ_ADMIN_KEY": admin_key, "LOYALTY_FUZZ_TERMINAL_ID": terminal_id,
            "LOYALTY_FUZZ_TERMINAL_SECRET": terminal_secret, "LOYALTY_FUZZ_ADMIN_KEY_ID": str(admin_key_id),
            "LOYALTY_FUZZ_SEEDED": json.dumps(seeded), "LOYALTY_FUZZ_MEMBER_TOKEN": member_token}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(base: str, method: str, path: str, body: dict | bytes | None = None, key: str | None = None,
         headers: dict | None = None) -> tuple[int, str]:
    sent = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex, **(headers or {})}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def answers(base: str) -> Counter:
    return parse_answers(call(base, "GET", "/metrics")[1])


def parse_answers(text: str) -> Counter:
    """``loyalty_http_requests_total`` of the gateway's /metrics: {(method, route, status): count}."""
    counts: Counter = Counter()
    pattern = r'^loyalty_http_requests_total\{method="([^"]*)",route="([^"]*)",status="(\d+)"\} ([0-9.e+]+)$'
    for match in re.finditer(pattern, text, re.M):
        counts[match[1], match[2], match[3]] += int(float(match[4]))
    return counts


def print_answers(counts: Counter) -> None:
    routes: dict[tuple[str, str], Counter] = {}
    for (method, route, status), n in counts.items():
        routes.setdefault((method, route), Counter())[status] += n
    for (method, route), statuses in sorted(routes.items(), key=lambda item: (item[0][1], item[0][0])):
        print(f"  {sum(statuses.values()):6}  {method:6} {route:45} "
              + " ".join(f"{status}:{n}" for status, n in sorted(statuses.items())))


def wait_ready(base: str, gateway: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            sys.exit(f"the gateway exited with {gateway.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if call(base, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"the gateway did not become ready in 30 s:\n{log.read_text()[-4000:]}")


def seed_sales(member_ids: list[int]) -> list[dict]:
    """Sales for refunds to find: two small ones and one as large as the bounds allow."""
    latte = {"sku": "LATTE", "qty": 2, "unit_price": 1800, "amount": 3600}
    largest = {"sku": "LATTE", "qty": MAX_QTY, "unit_price": MAX_FEN // MAX_QTY, "amount": MAX_FEN}
    return [{"txn_id": txn_id, "member_id": member_id, "lines": [line],
             "payments": [{"method": "cash", "amount": line["amount"]}]}
            for txn_id, member_id, line in [("FUZZ-0", member_ids[0], latte), ("FUZZ-1", member_ids[1], latte),
                                            ("FUZZ-MAX", member_ids[2], largest)]]


def seed(base: str, admin_key: str, wechat: FakeWeChat) -> dict[str, str]:
    """A store, its terminal, five members, three sales and a member of the mini-program (the
    fake WeChat's app connected, logged in, joined); answers the hooks' environment."""
    from gateway.auth import signature

    def ok(answer: tuple[int, str]) -> dict:
        assert answer[0] in (200, 201), answer
        return json.loads(answer[1])

    own_key_id = ok(call(base, "GET", "/v1/admin-keys", key=admin_key))["items"][0]["id"]
    ok(call(base, "POST", "/v1/stores", {"code": "S01", "name": "Fuzz S01"}, admin_key))
    terminal = ok(call(base, "POST", "/v1/stores/S01/terminals", {"code": "POS1"}, admin_key))
    members = [ok(call(base, "POST", "/v1/members", {"phone": f"1380013800{i}", "name": "Fuzz"}, admin_key))["id"]
               for i in range(5)]
    sales = seed_sales(members)
    for sale in sales:
        body = json.dumps(sale).encode()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        headers = {"X-Terminal-Id": terminal["terminal_id"], "X-Timestamp": timestamp, "X-Nonce": nonce,
                   "X-Signature": signature(terminal["secret"], "POST", "/v1/pos/orders", timestamp, nonce, body)}
        ok(call(base, "POST", "/v1/pos/orders", body, headers=headers))
    return st_env(admin_key, terminal["terminal_id"], terminal["secret"], own_key_id,
                  {"member_id": members, "txn_id": [sale["txn_id"] for sale in sales], "sku": ["LATTE"]},
                  member_token(base, admin_key, wechat, ok))


def member_token(base: str, admin_key: str, wechat: FakeWeChat, ok) -> str:
    """A joined member's token: the app connected, logged in and joined through the fake WeChat."""
    app_id, secret = "wx" + secrets.token_hex(8), secrets.token_hex(16)
    wechat.add_app(app_id, secret)
    ok(call(base, "POST", "/v1/channels", {"platform": "wechat", "app_id": app_id, "app_secret": secret}, admin_key))
    token = ok(call(base, "POST", "/v1/mp/login", {"app_id": app_id, "code": wechat.login_code(app_id)}))["token"]
    ok(call(base, "POST", "/v1/mp/join", {"phone_code": wechat.phone_code(app_id, "13800138009")}, token))
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=250, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--workers", type=int, default=1, help="st workers (above 1, st itself is not reliable)")
    parser.add_argument("--checks", default=CHECKS, help=f"st checks (default {CHECKS})")
    parser.add_argument("--min-requests", type=int, default=5000)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds for the whole st run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (log, database, report/)")
    parser.add_argument("--reports", default="json", help="st report formats for report/ (add har to see every request)")
    parser.add_argument("--database-url", help="an empty database to use instead of the throwaway SQLite file")
    parser.add_argument("--redis-url", help="a Redis to use instead of the in-process stand-in")
    parser.add_argument("st_args", nargs=argparse.REMAINDER, help="after --: more st run options (--include-path-regex ...)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="loyalty-fuzz-"))
    env = {**os.environ, "DATABASE_URL": args.database_url or f"sqlite://{tmp / 'loyalty.sqlite3'}",
           "LOYALTY_SECRET": secrets.token_urlsafe(32), "LOG_LEVEL": "WARNING",
           "REDIS_PREFIX": f"loyalty-fuzz:{uuid.uuid4().hex[:8]}:"}
    env.pop("REDIS_URL", None)
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    loyalty = str(BIN / "loyalty")
    subprocess.run([loyalty, "migrate"], env=env, check=True, cwd=tmp, stdout=subprocess.DEVNULL)
    created = subprocess.run([loyalty, "chain", "create", "Fuzz Chain"], env=env, check=True, cwd=tmp,
                             capture_output=True, text=True)
    admin_key = json.loads(created.stdout.strip().splitlines()[-1])["admin_key"]

    wechat = FakeWeChat(any_app=True)  # apps the run connects log in too
    fake_wechat = InThread(wechat)
    env["WECHAT_API_BASE_URL"] = fake_wechat.__enter__()  # never the real WeChat
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "gateway.log"
    with log.open("wb") as log_file:
        gateway = subprocess.Popen([loyalty, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    failed = True
    try:
        wait_ready(base, gateway, log)
        hooks_env = seed(base, admin_key, wechat)
        before = answers(base)
        command = st_command(base + "/openapi.json", max_examples=args.max_examples, seed=args.seed,
                             workers=args.workers, checks=args.checks, report_dir=str(tmp / "report"), reports=args.reports)
        command += [arg for arg in args.st_args if arg != "--"]
        print("$", " ".join(command), flush=True)
        started = time.monotonic()
        try:
            st = subprocess.run(command, env=hooks_env, cwd=ROOT,
                                timeout=args.timeout)
            st_status = st.returncode
        except subprocess.TimeoutExpired:
            print(f"st run did not finish in {args.timeout} s")
            st_status = 1
        elapsed = time.monotonic() - started
        made = answers(base) - before
        made["GET", "/metrics", "200"] -= 1  # the read that took this count
        made = +made
        by_status: Counter = Counter()
        for (_, _, status), n in made.items():
            by_status[status] += n
        total = sum(made.values())
        server_errors = sum(n for status, n in by_status.items() if status.startswith("5"))
        print("\nfuzz: answers by route (from the gateway's /metrics):")
        print_answers(made)
        print(f"fuzz: {total} requests in {elapsed:.0f} s; by status: "
              + ", ".join(f"{status}: {n}" for status, n in sorted(by_status.items())))
        # Whatever the run did, the ledger must still add up (API.md: loyalty verify).
        verify = subprocess.run([loyalty, "verify"], env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
        print("fuzz: loyalty verify: " + (verify.stdout.strip().splitlines() or ["(no output)"])[-1])
        problems = []
        if verify.returncode != 0:
            problems.append(f"loyalty verify found differences:\n{verify.stdout[-4000:]}{verify.stderr[-2000:]}")
        if st_status != 0:
            problems.append(f"st run exited with {st_status}")
        if server_errors:
            problems.append(f"{server_errors} answers were 5xx (see {log})")
        if total < args.min_requests:
            problems.append(f"only {total} requests, fewer than {args.min_requests}")
        failed = bool(problems)
        print("fuzz: FAILED: " + "; ".join(problems) if failed else "fuzz: passed")
        return 1 if failed else 0
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
        fake_wechat.__exit__(None, None, None)
        if failed or args.keep:
            print(f"fuzz: kept {tmp} (gateway.log, the database, report/)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
