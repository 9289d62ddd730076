"""A fake WeChat server API on loopback, speaking the paths, JSON shapes and error codes of the real one.

What it serves (WeChat's docs: auth.getAccessToken, auth.code2Session, phonenumber.getPhoneNumber,
membercard updateuser, subscribeMessage.send):

- ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`` → ``{access_token, expires_in}``;
  40013 for an unknown appid, 40125 for a wrong secret (``fetch_delay``: how long a fetch takes).
- ``GET /sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code`` →
  ``{openid, session_key, unionid?}``; 40029 for a code it never gave, 40163 for a used one.
- ``POST /wxa/business/getuserphonenumber?access_token=`` ``{code}`` →
  ``{errcode: 0, errmsg: "ok", phone_info: {phoneNumber, purePhoneNumber, countryCode, watermark}}``.
- ``POST /card/membercard/updateuser?access_token=`` → ``{errcode: 0, result_bonus, result_balance, openid}``
  (recorded in ``card_updates``).
- ``POST /cgi-bin/message/subscribe/send?access_token=`` → ``{errcode: 0, msgid}`` (recorded in ``messages``)
  when the user allowed one more message of that template (``subscribe``: one per accept, as a
  one-time subscription), else 43101; 40037 without a template id, 47003 for a value too long for
  its keyword's type (``thing`` 20 characters, ``number`` 32, ...) or a keyword without ``value``.

``POST /_fake/codes`` (not WeChat's) hands out codes to a demo or a test in another process.
``python -m tests.fakes.wechat --port 8081`` serves it, accepting any app (``make run`` does).

Calls with an access token answer 40001 for a token it never gave and 42001 for an expired one
(``expire_tokens``). ``fail(path, errcode, times)`` makes the next ``times`` calls of a path answer
that errcode (``-1``: system busy). Every request is counted in ``calls`` by path.
"""
from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeApp:
    app_id: str
    secret: str
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at (unix)


class FakeWeChat:
    def __init__(self, any_app: bool = False) -> None:
        self.any_app = any_app  # every appid is an app, whatever its secret (for a fuzzing run)
        self.apps: dict[str, FakeApp] = {}
        self.login_codes: dict[str, tuple[str, str, str | None]] = {}  # code -> (app_id, openid, unionid)
        self.used_codes: set[str] = set()
        self.phone_codes: dict[str, tuple[str, str]] = {}  # code -> (app_id, phone)
        self.failures: dict[str, list[int]] = {}
        self.calls: Counter[str] = Counter()
        self.card_updates: list[dict] = []
        self.messages: list[dict] = []
        self.allowed: Counter[tuple[str, str, str]] = Counter()  # (app, openid, template) -> sends left
        self.token_fetches: Counter[str] = Counter()
        self.fetch_delay = 0.0
        self.send_delay = 0.0  # how long a subscribe message takes to answer (after it was sent)

    # --- what a test sets up --------------------------------------------------------------
    def add_app(self, app_id: str, secret: str) -> None:
        self.apps[app_id] = FakeApp(app_id, secret)

    def login_code(self, app_id: str, openid: str | None = None, unionid: str | None = None) -> str:
        """The code ``wx.login()`` would give this user of this app."""
        code = secrets.token_hex(16)
        self.login_codes[code] = (app_id, openid or "o" + secrets.token_hex(14), unionid)
        return code

    def phone_code(self, app_id: str, phone: str) -> str:
        code = secrets.token_hex(16)
        self.phone_codes[code] = (app_id, phone)
        return code

    def subscribe(self, app_id: str, openid: str, template_id: str) -> None:
        """The user tapped "accept" for this template in a subscribe popup: one message allowed."""
        self.allowed[(app_id, openid, template_id)] += 1

    def fail(self, path: str, errcode: int, times: int = 1) -> None:
        self.failures.setdefault(path, []).extend([errcode] * times)

    def expire_tokens(self, app_id: str) -> None:
        for token in self.apps[app_id].tokens:
            self.apps[app_id].tokens[token] = 0

    # --- the server -----------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_get("/sns/jscode2session", self._code2session)
        app.router.add_post("/wxa/business/getuserphonenumber", self._phone)
        app.router.add_post("/card/membercard/updateuser", self._card)
        app.router.add_post("/cgi-bin/message/subscribe/send", self._subscribe)
        app.router.add_post("/_fake/codes", self._codes)
        return app

    async def _codes(self, request: web.Request) -> web.Response:
        """Not WeChat's: what ``wx.login()`` and the phone button would give a user of an app, for a
        demo or a test in another process. ``{app_id, openid?, phone?}`` → ``{login_code, phone_code?}``."""
        asked = await request.json()
        answer = {"login_code": self.login_code(asked["app_id"], asked.get("openid"))}
        if asked.get("phone"):
            answer["phone_code"] = self.phone_code(asked["app_id"], asked["phone"])
        return web.json_response(answer)

    def _failure(self, request: web.Request) -> web.Response | None:
        self.calls[request.path] += 1
        queued = self.failures.get(request.path)
        if queued:
            code = queued.pop(0)
            return _error(code, "system error" if code == -1 else f"injected {code}")
        return None

    async def _token(self, request: web.Request) -> web.Response:
        if (failed := self._failure(request)) is not None:
            return failed
        app = self._app(request)
        if request.query.get("grant_type") != "client_credential":
            return _error(40002, "invalid grant_type")
        if app is None:
            return _error(40013, "invalid appid")
        if request.query.get("secret") != app.secret:
            return _error(40125, "invalid appsecret")
        if self.fetch_delay:
            await asyncio.sleep(self.fetch_delay)
        self.token_fetches[app.app_id] += 1
        token = "ACCESS_" + secrets.token_hex(20)
        app.tokens[token] = time.time() + 7200
        return web.json_response({"access_token": token, "expires_in": 7200})

    def _app(self, request: web.Request) -> FakeApp | None:
        app_id, secret = request.query.get("appid", ""), request.query.get("secret", "")
        if self.any_app and app_id:
            self.apps.setdefault(app_id, FakeApp(app_id, secret)).secret = secret
        return self.apps.get(app_id)

    def _with_token(self, request: web.Request) -> tuple[FakeApp | None, web.Response | None]:
        """A call signed by an access token: the app, or the answer that refuses it (an injected
        failure first, then 40001 for a token never given, 42001 for an expired one)."""
        if (failed := self._failure(request)) is not None:
            return None, failed
        token = request.query.get("access_token", "")
        for app in self.apps.values():
            if token in app.tokens:
                if app.tokens[token] < time.time():
                    return app, _error(42001, "access_token expired")
                return app, None
        return None, _error(40001, "invalid credential, access_token is invalid or not latest")

    async def _code2session(self, request: web.Request) -> web.Response:
        if (failed := self._failure(request)) is not None:
            return failed
        q = request.query
        app = self._app(request)
        if app is None or q.get("secret") != app.secret:
            return _error(40125 if app else 40013, "invalid appsecret" if app else "invalid appid")
        code = q.get("js_code", "")
        if code in self.used_codes:
            return _error(40163, "code been used")
        found = self.login_codes.get(code)
        if found is None or found[0] != app.app_id or q.get("grant_type") != "authorization_code":
            return _error(40029, "invalid code")
        self.used_codes.add(code)
        _, openid, unionid = found
        answer = {"openid": openid, "session_key": secrets.token_urlsafe(16)}
        if unionid:
            answer["unionid"] = unionid
        return web.json_response(answer)

    async def _phone(self, request: web.Request) -> web.Response:
        app, refused = self._with_token(request)
        if refused is not None:
            return refused
        code = (await request.json()).get("code", "")
        found = self.phone_codes.pop(code, None)
        if found is None or found[0] != app.app_id:
            return _error(40029, "invalid code")
        phone = found[1]
        country, pure = ("86", phone) if not phone.startswith("+") else (phone[1:3], phone[3:])
        return web.json_response({"errcode": 0, "errmsg": "ok", "phone_info": {
            "phoneNumber": phone, "purePhoneNumber": pure, "countryCode": country,
            "watermark": {"timestamp": int(time.time()), "appid": app.app_id}}})

    async def _card(self, request: web.Request) -> web.Response:
        _, refused = self._with_token(request)
        if refused is not None:
            return refused
        body = await request.json()
        self.card_updates.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok", "result_bonus": body.get("bonus", 0),
                                  "result_balance": body.get("balance", 0), "openid": body.get("code", "")})

    async def _subscribe(self, request: web.Request) -> web.Response:
        app, refused = self._with_token(request)
        if refused is not None:
            return refused
        body = await request.json()
        if not body.get("template_id"):
            return _error(40037, "invalid template_id")
        for keyword, value in (body.get("data") or {}).items():
            text = value.get("value") if isinstance(value, dict) else None
            limit = KEYWORD_LIMITS.get(keyword.rstrip("0123456789"), 200)
            if not isinstance(text, str) or not text or len(text) > limit:
                return _error(47003, f"argument invalid! data.{keyword}.value invalid")
        granted = (app.app_id, body.get("touser", ""), body["template_id"])
        if self.allowed[granted] <= 0:
            return _error(43101, "user refuse to accept the msg")
        self.allowed[granted] -= 1
        self.messages.append(body)
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": len(self.messages)})


KEYWORD_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "character_string": 32, "number": 32, "letter": 32,
                  "symbol": 5, "time": 40, "date": 40, "amount": 20}


def _error(code: int, message: str) -> web.Response:
    """WeChat answers errors with HTTP 200 and an errcode."""
    return web.json_response({"errcode": code, "errmsg": message})


class InThread:
    """A FakeWeChat served from a thread of its own (for a gateway in another process, as in
    ``make fuzz``): ``with InThread(fake) as base_url: ...``."""

    def __init__(self, fake: FakeWeChat) -> None:
        self.fake = fake
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.base_url = ""

    def __enter__(self) -> str:
        threading.Thread(target=self._serve, daemon=True, name="fake-wechat").start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake WeChat did not start")
        return self.base_url

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        runner = web.AppRunner(self.fake.application())
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __exit__(self, *exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


# --- WeChat as a sender: the pushes it makes to a connected app's server URL --------------------
def card_event(event: str, openid: str, card_id: str, code: str, **more: str) -> str:
    """The XML of a member-card event push (user_get_card, user_del_card, update_member_card)."""
    extra = "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in more.items())
    return (f"<xml><ToUserName><![CDATA[gh_fakeaccount]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
            f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event><CardId><![CDATA[{card_id}]]></CardId>"
            f"<UserCardCode><![CDATA[{code}]]></UserCardCode>{extra}</xml>")


def signed_push(token: str, xml: str, aes_key: str | None = None, app_id: str | None = None) -> tuple[dict, bytes]:
    """The query and body WeChat sends: plain mode signed with the token, or (``aes_key``) safe mode,
    encrypted and signed with wechatpy's own WeChatCrypto, as WeChat does."""
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.utils import WeChatSigner

    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    query = {"signature": signer.signature, "timestamp": timestamp, "nonce": nonce, "openid": "o_sender"}
    if aes_key is None:
        return query, xml.encode()
    encrypted = WeChatCrypto(token, aes_key, app_id).encrypt_message(xml, nonce, timestamp)
    msg_signature = encrypted.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    return {**query, "encrypt_type": "aes", "msg_signature": msg_signature}, encrypted.encode()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="a fake WeChat on loopback (any app id and secret are accepted)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    web.run_app(FakeWeChat(any_app=True).application(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
