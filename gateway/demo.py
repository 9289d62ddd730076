"""The demo chain: seeded once (idempotently) so a newcomer can try every API at once."""
from __future__ import annotations

import json
import secrets
import shlex
import time
import urllib.request
import uuid
from urllib.parse import quote
from pathlib import Path

from adapters.marketplaces import youzan
from loyalty_core import chains, channels, members
from loyalty_core.clock import Clock
from loyalty_core.crypto import Vault
from loyalty_core.models import Chain, Terminal
from loyalty_core.program import Program

from . import db
from .auth import signature
from .settings import Settings

SEED_FILE = Path("var/demo.json")
DEMO_PHONE = "13800138000"
DEMO_APP = {"platform": "wechat", "app_id": "wx0de0000000000001", "app_secret": "demoAppSecret0000000000000000001"}
NEW_PHONE = "13900139000"  # who joins from the mini-program in the banner's example
DEMO_SHOP = {"platform": "youzan", "shop_id": "90000001", "client_id": "demoYouzanClient01",
             "client_secret": "demoYouzanSecret0000000000000001"}

DEMO_PROGRAM = {
    "timezone": "Asia/Shanghai",
    "points": {
        "earn": {"per_amount": 100, "points": 1},
        "category_multipliers": {"fresh": 2},
        "exclude_categories": ["tobacco"],
        "campaigns": [{"name": "member day", "days_of_month": [8, 18, 28], "factor": 2},
                      {"name": "lunch", "weekdays": [1, 2, 3, 4, 5], "hours": "11:00-14:00", "factor": 2}],
        "pending_days": 0,
        "expiry": {"mode": "rolling_months", "months": 24},
        "redeem": {"points": 100, "amount": 100, "max_ratio": 0.5},
    },
    "behaviors": {"register": {"points": 100}, "checkin": {"points": 5, "streak_bonus": {"7": 20}}},
    "tiers": {"metric": "growth", "window_months": 12, "retention_months": 12, "levels": [
        {"code": "regular", "name": "普通会员", "threshold": 0, "earn_multiplier": 1},
        {"code": "silver", "name": "银卡", "threshold": 1000, "earn_multiplier": 1.2},
        {"code": "gold", "name": "金卡", "threshold": 5000, "earn_multiplier": 1.5, "discount_percent": 2}]},
}


def load_seed() -> dict | None:
    return json.loads(SEED_FILE.read_text()) if SEED_FILE.exists() else None


async def seed(settings: Settings) -> dict:
    """Create the demo chain, store S01, terminal POS1 and one member, unless they exist."""
    vault = Vault(settings.require_secret())
    await db.open_database(settings.database_url)
    try:
        existing = load_seed()
        if existing and await Chain.exists(id=existing["chain_id"]) and await Terminal.exists(
                terminal_id=existing["terminal_id"]):
            await _demo_app(existing["chain_id"], vault)
            await _demo_shop(existing["chain_id"], vault)
            return existing
        chain, key = await chains.create_chain("Demo Coffee")
        program = await chains.put_program(chain.id, Program.model_validate(DEMO_PROGRAM))
        await chains.create_store(chain.id, "S01", "Demo Coffee 徐汇店", None)
        terminal = await chains.create_terminal(chain.id, "S01", "POS1", vault)
        member = await members.register_member(
            chain.id, members.NewMember(phone=DEMO_PHONE, name="张三", store_code="S01"), program, vault, Clock().now())
        await _demo_app(chain.id, vault)
        await _demo_shop(chain.id, vault)
        seeded = {"chain_id": chain.id, "admin_key": key.key, "terminal_id": terminal.terminal.terminal_id,
                  "terminal_secret": terminal.secret, "member_id": member.id, "member_phone": DEMO_PHONE}
        SEED_FILE.parent.mkdir(parents=True, exist_ok=True)
        SEED_FILE.write_text(json.dumps(seeded, indent=2))
        SEED_FILE.chmod(0o600)
        return seeded
    finally:
        await db.close_database()


async def _demo_app(chain_id: int, vault: Vault) -> None:
    """The demo mini-program app (its WeChat is the fake that ``make run`` starts), once."""
    if await channels.connected("wechat", DEMO_APP["app_id"], vault) is None:
        await channels.connect_wechat(chain_id, DEMO_APP, vault, Clock().now())


async def _demo_shop(chain_id: int, vault: Vault) -> None:
    """The demo Youzan shop (its pushes are the ones the banner prints), once."""
    if await channels.connected("youzan", DEMO_SHOP["shop_id"], vault) is None:
        await channels.connect_shop(chain_id, "youzan", DEMO_SHOP, vault, Clock().now())


def youzan_push(kind: str, order_id: str, msg: dict) -> tuple[str, bytes]:
    """A push of the demo shop as Youzan sends it: its ``Event-Sign`` and body."""
    body = json.dumps({"client_id": DEMO_SHOP["client_id"], "kdt_id": int(DEMO_SHOP["shop_id"]), "id": order_id,
                       "type": kind, "msg": quote(json.dumps(msg, separators=(",", ":"))),
                       "msg_id": str(uuid.uuid4()), "version": int(time.time() * 1000)},
                      separators=(",", ":")).encode()
    return youzan.sign(DEMO_SHOP["client_id"], body, DEMO_SHOP["client_secret"]), body


def youzan_curls(base_url: str, phone: str, order_id: str | None = None) -> list[str]:
    """A ready-to-paste paid order and its confirmation from the demo Youzan shop, for ``phone``."""
    order_id = order_id or "E" + time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(3)
    paid_at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 8 * 3600))  # Beijing time
    paid = youzan_push("trade_TradeBuyerPay", order_id, {"full_order_info": {
        "order_info": {"tid": order_id, "pay_time": paid_at}, "buyer_info": {"buyer_phone": phone},
        "pay_info": {"payment": "66.00"}, "orders": [{"outer_item_id": "BEANS-250G", "num": 1, "payment": "66.00"}]}})
    confirmed = youzan_push("trade_TradeSuccess", order_id, {"tid": order_id})

    def curl(pushed: tuple[str, bytes]) -> str:
        return " ".join(shlex.quote(part) for part in [
            "curl", "-sS", "-X", "POST", base_url + "/v1/hooks/youzan", "-H", f"Event-Sign: {pushed[0]}",
            "-H", "Content-Type: application/json", "--data-raw", pushed[1].decode()])

    return [f"Try the Youzan shop {DEMO_SHOP['shop_id']} (signed as Youzan signs; a paid order of 66 yuan for "
            f"{phone}, pending until the second push confirms it):", "  " + curl(paid), "  " + curl(confirmed), ""]


def mini_program_curls(wechat_base_url: str, base_url: str) -> list[str]:
    """A ready-to-paste login and join for the demo app, with codes from the fake WeChat (each
    valid once); nothing when WeChat is not the fake."""
    try:
        request = urllib.request.Request(wechat_base_url.rstrip("/") + "/_fake/codes", method="POST", data=json.dumps(
            {"app_id": DEMO_APP["app_id"], "phone": NEW_PHONE}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=2) as answer:
            codes = json.loads(answer.read())
    except (OSError, ValueError):
        return []
    login = json.dumps({"app_id": DEMO_APP["app_id"], "code": codes["login_code"]}, separators=(",", ":"))
    join = json.dumps({"phone_code": codes["phone_code"], "nickname": "小王", "store_code": "S01"}, separators=(",", ":"),
                      ensure_ascii=False)
    return [
        f"Try the mini-program (its WeChat is the fake at {wechat_base_url}; codes are valid once, more from",
        f"  curl -sS -X POST {wechat_base_url}/_fake/codes -d '{{\"app_id\":\"{DEMO_APP['app_id']}\",\"phone\":\"{NEW_PHONE}\"}}'):",
        f"  TOKEN=$(curl -sS -X POST {base_url}/v1/mp/login -H 'Content-Type: application/json' --data-raw "
        f"'{login}' | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')",
        f"  curl -sS -X POST {base_url}/v1/mp/join -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
        f"--data-raw '{join}'",
        f"  curl -sS {base_url}/v1/mp/me/code -H \"Authorization: Bearer $TOKEN\"",
        "",
    ]


def signed_curl(seeded: dict, method: str, path: str, body: str, base_url: str) -> str:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
    sig = signature(seeded["terminal_secret"], method, path, timestamp, nonce, body.encode())
    parts = ["curl", "-sS", "-X", method.upper(), base_url.rstrip("/") + path,
             "-H", f"X-Terminal-Id: {seeded['terminal_id']}", "-H", f"X-Timestamp: {timestamp}",
             "-H", f"X-Nonce: {nonce}", "-H", f"X-Signature: {sig}"]
    if body:
        parts += ["-H", "Content-Type: application/json", "--data-raw", body]
    return " ".join(shlex.quote(part) for part in parts)


def banner(seeded: dict, host: str, port: int, wechat_base_url: str | None = None) -> str:
    base = f"http://{host}:{port}"
    scan = json.dumps({"code": seeded["member_phone"]}, separators=(",", ":"))
    return "\n".join([
        "Demo chain ready (SQLite under ./var, in-process Redis stand-in).",
        f"  chain id:        {seeded['chain_id']}",
        f"  admin key:       {seeded['admin_key']}",
        f"  terminal id:     {seeded['terminal_id']}  (store S01)",
        f"  terminal secret: {seeded['terminal_secret']}",
        f"  demo member:     #{seeded['member_id']}, phone {seeded['member_phone']}",
        "",
        "Try the admin API:",
        f"  curl -sS {base}/v1/members/{seeded['member_id']} -H 'Authorization: Bearer {seeded['admin_key']}'",
        "",
        "Try the POS API (signed; valid for 5 minutes and once — make a fresh one with",
        f"  .venv/bin/loyalty pos-curl POST /v1/pos/scan '{scan}'):",
        "  " + signed_curl(seeded, "POST", "/v1/pos/scan", scan, base),
        "",
        *(mini_program_curls(wechat_base_url, base) if wechat_base_url else []),
        *youzan_curls(base, seeded["member_phone"]),
        f"API reference: {base}/docs   OpenAPI: {base}/openapi.json",
    ])
