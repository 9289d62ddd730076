"""The bare baseline: the least a POS server on aiohttp + asyncpg must do for the same requests.

It answers the gateway's four POS routes, with the same signed requests, on its own two tables
in the bench database:

- ``baseline_accounts (member_id PRIMARY KEY, phone UNIQUE, card_no UNIQUE, name, balance)``: one
  row per seeded member (the same phones and cards), 2000 points each;
- ``baseline_journal (id, key UNIQUE, member_id, amount, payable, earned, redeemed, created_at)``:
  three history rows per member, then one row per order and per refund.

Every request: the body is read, the four signing headers are checked as the gateway checks them
(present, the terminal known, ``X-Timestamp`` within 300 s, the HMAC of docs/pos-signing.md over
the exact bytes, compared in constant time) with the terminal's secret held in memory; the nonce
is **not** recorded anywhere (the gateway records it in Redis), and an ``Idempotency-Key`` is
required where the gateway requires one but not stored (the journal's unique key is the only
idempotency). The body is parsed with orjson, without a schema. Then:

| route | SQL (prepared statements, asyncpg pool of ``--pool-size`` per process) |
|---|---|
| ``POST /v1/pos/scan`` | one indexed ``SELECT`` of the account by phone (11 digits from 1) or card |
| ``POST /v1/pos/checkout/preview`` | one indexed ``SELECT`` of the balance by phone or card |
| ``POST /v1/pos/orders`` | ``BEGIN``; ``INSERT INTO baseline_journal … SELECT … FROM baseline_accounts WHERE phone = … ON CONFLICT (key) DO NOTHING RETURNING member_id`` (key ``order:<txn_id>``); ``UPDATE baseline_accounts SET balance = balance + x WHERE member_id = … AND balance + x >= 0 RETURNING balance``; ``COMMIT`` |
| ``POST /v1/pos/orders/{txn_id}/refunds`` | ``BEGIN``; ``INSERT INTO baseline_journal … SELECT … FROM baseline_journal WHERE key = 'order:<txn_id>' ON CONFLICT DO NOTHING RETURNING member_id, amount`` (key ``refund:<txn_id>:<refund_id>``, the points pro rata to the refunded fen); the same guarded ``UPDATE``; ``COMMIT`` |

Pricing is arithmetic on the body: subtotal = Σ line amounts, 100 points redeemed = 100 fen off,
1 point per 100 fen of the subtotal (no categories, campaigns or tiers), payments must add up to
the payable (else 422). A known key answers 200 with ``"duplicate": true`` (one more ``SELECT``,
only then), an unknown member 404, a guard that fails 422 ``insufficient_points``.

``python -m bench.baseline setup URL --members N`` (re)creates the tables; ``python -m
bench.baseline serve URL --port P --processes N`` serves (N processes on one port with
SO_REUSEPORT, like ``loyalty serve --workers N``), the terminal's id and secret in the environment
variables ``BENCH_TERMINAL_ID`` and ``BENCH_TERMINAL_SECRET``.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import hmac
import os
import signal
import subprocess
import sys
import time

import asyncpg
import orjson
from aiohttp import web

from .common import OPENING_POINTS, sign

SKEW_SECONDS = 300
HISTORY_ROWS = 3

SCHEMA = f"""
DROP TABLE IF EXISTS baseline_journal, baseline_accounts;
CREATE TABLE baseline_accounts (
    member_id integer PRIMARY KEY, phone text NOT NULL UNIQUE, card_no text NOT NULL UNIQUE, name text,
    balance bigint NOT NULL);
CREATE TABLE baseline_journal (
    id bigserial PRIMARY KEY, key text NOT NULL UNIQUE, member_id integer NOT NULL, amount bigint NOT NULL,
    payable bigint NOT NULL, earned bigint NOT NULL, redeemed bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO baseline_accounts
    SELECT i, '139' || lpad(i::text, 8, '0'), '9' || lpad(i::text, 11, '0'), 'member ' || i, {OPENING_POINTS}
    FROM generate_series(0, $MEMBERS - 1) AS i;
INSERT INTO baseline_journal (key, member_id, amount, payable, earned, redeemed, created_at)
    SELECT 'history:' || i || ':' || n, i, 0, 0, 0, 0, now() - n * interval '30 days'
    FROM generate_series(0, $MEMBERS - 1) AS i, generate_series(1, {HISTORY_ROWS}) AS n;
ANALYZE baseline_accounts, baseline_journal;
"""

SCAN_PHONE = "SELECT member_id, name, balance FROM baseline_accounts WHERE phone = $1"
SCAN_CARD = "SELECT member_id, name, balance FROM baseline_accounts WHERE card_no = $1"
ORDER_JOURNAL = {
    column: f"""INSERT INTO baseline_journal (key, member_id, amount, payable, earned, redeemed)
                SELECT $1, member_id, $3, $4, $5, $6 FROM baseline_accounts WHERE {column} = $2
                ON CONFLICT (key) DO NOTHING RETURNING id, member_id"""
    for column in ("phone", "card_no")}
REFUND_JOURNAL = """INSERT INTO baseline_journal (key, member_id, amount, payable, earned, redeemed)
    SELECT $1, member_id, (redeemed * $3 / payable) - (earned * $3 / payable), -$3, 0, 0
    FROM baseline_journal WHERE key = $2 AND payable >= $3 AND payable > 0
    ON CONFLICT (key) DO NOTHING RETURNING id, member_id, amount"""
GUARDED = ("UPDATE baseline_accounts SET balance = balance + $2 WHERE member_id = $1 AND balance + $2 >= 0 "
           "RETURNING balance")
KNOWN = "SELECT 1 FROM baseline_journal WHERE key = $1"


class Refusal(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def response(self) -> web.Response:
        body = {"type": "about:blank", "title": self.code, "status": self.status, "detail": self.detail,
                "code": self.code}
        return web.Response(body=orjson.dumps(body), status=self.status, content_type="application/problem+json")


class Baseline:
    def __init__(self, database_url: str, terminals: dict[str, bytes], pool_size: int) -> None:
        self.database_url = database_url
        self.terminals = terminals
        self.pool_size = pool_size
        self.pool: asyncpg.Pool | None = None

    # --- the request pipeline: signature, Idempotency-Key, JSON ------------------------------------
    async def checked(self, request: web.Request, keyed: bool) -> dict:
        body = await request.read()
        headers = request.headers
        terminal, timestamp = headers.get("X-Terminal-Id", ""), headers.get("X-Timestamp", "")
        nonce, given = headers.get("X-Nonce", ""), headers.get("X-Signature", "")
        secret = self.terminals.get(terminal)
        if not (timestamp and nonce and given) or secret is None or not 16 <= len(nonce) <= 64:
            raise Refusal(401, "unauthorized", "Send X-Terminal-Id, X-Timestamp, X-Nonce and X-Signature")
        if not (timestamp.isascii() and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > SKEW_SECONDS:
            raise Refusal(401, "stale_request", "X-Timestamp is too far from the server's clock")
        expected = sign(secret, request.method, request.raw_path, timestamp, nonce, body)
        if not hmac.compare_digest(expected, given.lower()):
            raise Refusal(401, "invalid_signature", "X-Signature does not match this request")
        if keyed and not headers.get("Idempotency-Key"):
            raise Refusal(400, "idempotency_key_required", "Send an Idempotency-Key")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refusal(400, "invalid_json", "The body is not JSON") from None
        if not isinstance(data, dict):
            raise Refusal(422, "validation_error", "The body must be an object")
        return data

    @staticmethod
    def column(code: str) -> str:
        return "phone" if len(code) == 11 and code.startswith("1") and code.isdigit() else "card_no"

    @staticmethod
    def price(data: dict) -> tuple[int, int, int, int]:
        """(subtotal, redeemed, payable, earned) of an order body."""
        subtotal = sum(int(line["amount"]) for line in data["lines"])
        redeemed = int(data.get("redeem_points") or 0)
        if redeemed % 100 or redeemed > subtotal // 2:
            raise Refusal(422, "invalid_redeem_points", "redeem_points must be a multiple of 100 within the limit")
        return subtotal, redeemed, subtotal - redeemed, subtotal // 100

    # --- the routes -------------------------------------------------------------------------------
    async def scan(self, request: web.Request) -> web.Response:
        data = await self.checked(request, keyed=False)
        code = str(data.get("code", "")).strip()
        row = await self.pool.fetchrow(SCAN_PHONE if self.column(code) == "phone" else SCAN_CARD, code)
        if row is None:
            raise Refusal(404, "code_not_found", "No member for this code")
        member = {"id": row["member_id"], "display_name": (row["name"] or "*")[0] + "*",
                  "balances": {"points": row["balance"]}, "frozen": False}
        return web.Response(body=orjson.dumps({"kind": "member", "coupons": [], "member": member}),
                            content_type="application/json")

    async def preview(self, request: web.Request) -> web.Response:
        data = await self.checked(request, keyed=False)
        subtotal, redeemed, payable, earned = self.price(data)
        code = str(data.get("member_code", ""))
        row = await self.pool.fetchrow(SCAN_PHONE if self.column(code) == "phone" else SCAN_CARD, code)
        if row is None:
            raise Refusal(404, "code_not_found", "No member for this code")
        if row["balance"] < redeemed:
            raise Refusal(422, "insufficient_points", f"{redeemed} points asked, {row['balance']} available")
        answer = {"subtotal": subtotal, "tier_discount": 0, "coupon_discount": 0, "points_discount": redeemed,
                  "payable": payable, "points_to_earn": earned}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def order(self, request: web.Request) -> web.Response:
        data = await self.checked(request, keyed=True)
        subtotal, redeemed, payable, earned = self.price(data)
        if sum(int(p["amount"]) for p in data.get("payments", [])) != payable:
            raise Refusal(422, "amount_mismatch", f"The payable amount is {payable} fen")
        txn_id, code = str(data["txn_id"]), str(data.get("member_code", ""))
        key = f"order:{txn_id}"
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(ORDER_JOURNAL[self.column(code)], key, code, earned - redeemed, payable,
                                          earned, redeemed)
                balance = None if row is None else await conn.fetchval(GUARDED, row["member_id"], earned - redeemed)
                if balance is None:
                    raise _Rollback()
        answer = {"order_id": row["id"], "txn_id": txn_id, "member_id": row["member_id"], "subtotal": subtotal,
                  "tier_discount": 0, "coupon_discount": 0, "points_discount": redeemed, "payable": payable,
                  "points_earned": earned, "points_redeemed": redeemed, "balances": {"points": balance},
                  "duplicate": False}
        return web.Response(body=orjson.dumps(answer), status=201, content_type="application/json")

    async def refund(self, request: web.Request) -> web.Response:
        data = await self.checked(request, keyed=True)
        txn_id, refund_id = request.match_info["txn_id"], str(data["refund_id"])
        amount = int(data["amount"])
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(REFUND_JOURNAL, f"refund:{txn_id}:{refund_id}", f"order:{txn_id}", amount)
                balance = None if row is None else await conn.fetchval(GUARDED, row["member_id"], row["amount"])
                if balance is None:
                    raise _Rollback()
        answer = {"refund_id": refund_id, "order_id": row["id"], "txn_id": txn_id, "amount": amount,
                  "points_delta": row["amount"], "balances": {"points": balance}, "duplicate": False}
        return web.Response(body=orjson.dumps(answer), status=201, content_type="application/json")

    # --- what went wrong, only on the failure paths ---------------------------------------------------
    async def failed(self, request: web.Request) -> web.Response:
        """Why an order's or refund's transaction rolled back: a known key, an unknown one, the guard."""
        data = orjson.loads(await request.read())
        if "txn_id" in request.match_info:
            key = f"refund:{request.match_info['txn_id']}:{data['refund_id']}"
            if await self.pool.fetchval(KNOWN, key):
                return _duplicate(key)
            if not await self.pool.fetchval(KNOWN, f"order:{request.match_info['txn_id']}"):
                raise Refusal(404, "order_not_found", "No such order")
            raise Refusal(422, "refund_exceeds_order", "More than the order's payable")
        key = f"order:{data['txn_id']}"
        if await self.pool.fetchval(KNOWN, key):
            return _duplicate(key)
        code = str(data.get("member_code", ""))
        if await self.pool.fetchrow(SCAN_PHONE if self.column(code) == "phone" else SCAN_CARD, code) is None:
            raise Refusal(404, "code_not_found", "No member for this code")
        raise Refusal(422, "insufficient_points", "Not enough points")

    def app(self) -> web.Application:
        @web.middleware
        async def problems(request: web.Request, handler) -> web.StreamResponse:
            try:
                return await handler(request)
            except Refusal as refusal:
                return refusal.response()
            except _Rollback:
                try:
                    return await self.failed(request)
                except Refusal as refusal:
                    return refusal.response()
            except (KeyError, TypeError, ValueError) as error:
                return Refusal(422, "validation_error", f"{type(error).__name__}: {error}").response()

        async def database(app: web.Application):
            self.pool = await asyncpg.create_pool(self.database_url, min_size=self.pool_size,
                                                  max_size=self.pool_size)
            yield
            await self.pool.close()

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application(middlewares=[problems], client_max_size=2 * 1024 * 1024)
        app.cleanup_ctx.append(database)
        app.router.add_get("/healthz", healthz)
        app.router.add_post("/v1/pos/scan", self.scan)
        app.router.add_post("/v1/pos/checkout/preview", self.preview)
        app.router.add_post("/v1/pos/orders", self.order)
        app.router.add_post("/v1/pos/orders/{txn_id}/refunds", self.refund)
        return app


class _Rollback(Exception):
    """Raised inside the transaction so that it rolls back; answered by ``Baseline.failed``."""


def _duplicate(key: str) -> web.Response:
    return web.Response(body=orjson.dumps({"key": key, "duplicate": True}), status=200,
                        content_type="application/json")


async def setup(database_url: str, members: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(SCHEMA.replace("$MEMBERS", str(int(members))))
    finally:
        await conn.close()


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def serve(args: argparse.Namespace) -> int:
    if args.processes > 1:
        argv = [sys.executable, "-m", "bench.baseline", "serve", args.database_url, "--host", args.host,
                "--port", str(args.port), "--processes", "1", "--pool-size", str(args.pool_size)]
        children = [subprocess.Popen(argv, preexec_fn=_die_with_parent) for _ in range(args.processes)]

        def stop(signum, _frame) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        for child in children:
            child.wait()
        return 0
    terminals = {os.environ["BENCH_TERMINAL_ID"]: os.environ["BENCH_TERMINAL_SECRET"].encode()}
    web.run_app(Baseline(args.database_url, terminals, args.pool_size).app(), host=args.host, port=args.port,
                reuse_port=True, access_log=None, print=None)
    return 0


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    make = sub.add_parser("setup", help="(re)create the baseline's tables")
    make.add_argument("database_url")
    make.add_argument("--members", type=int, default=10_000)
    run = sub.add_parser("serve", help="serve the four POS routes")
    run.add_argument("database_url")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8090)
    run.add_argument("--processes", type=int, default=2)
    run.add_argument("--pool-size", type=int, default=5, help="asyncpg pool per process (the gateway's default: 5)")
    args = top.parse_args(argv)
    args.database_url = args.database_url.replace("postgres://", "postgresql://", 1)
    if args.command == "setup":
        asyncio.run(setup(args.database_url, args.members))
        return 0
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
