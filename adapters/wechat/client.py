"""WeChat's server API through wechatpy, at the edge of the gateway.

- **Never on the event loop.** wechatpy is synchronous (requests): every call runs in this
  client's own bounded thread pool (``threads``, 8 by default), so a slow WeChat holds at most that
  many threads and never the loop.
- **Every base URL from ``WECHAT_API_BASE_URL``**: wechatpy's client (``cgi-bin/``), its API groups
  (``wxa``, ``card``, …) and the access-token URL are pointed there, so tests talk to the fake WeChat
  of ``tests/fakes/wechat.py`` and nothing calls the real host.
- **One access token per app for all processes**, cached in Redis (``{chain:N}:wechat:token:<app>``,
  for its ``expires_in`` less 5 minutes; ``adapters.tokens``). A process that finds none takes a
  short Redis lock and fetches it; the others wait for it to appear, so two processes never fetch
  at once. A call
  answered ``40001``/``42001``/``40014`` (the token is invalid or expired: WeChat revoked it, or
  another holder of the app secret fetched a new one) forgets that token (only if it is still the
  cached one), fetches one once, and is sent once more.
- **WeChat's error codes become the core's errors here**: ``40029``/``40163`` (a login or phone code
  that is invalid or used) → 401 ``wechat_code_invalid``; ``-1`` (system busy) is retried with
  backoff (0.2 s, 0.4 s) and then → 502; any other errcode, or no answer → 502 ``wechat_error``
  with the errcode in the detail. The core never sees a WeChat dict: it gets ``LoginSession`` and
  phone numbers.

Sources: wechatpy 1.8.18 (``WeChatClient``, ``WeChatWxa.code_to_session``, ``WeChatCard.update_user``
is ``card/membercard/updateuser``, ``BaseWeChatClient._handle_result`` and ``_fetch_access_token``);
WeChat's docs for ``auth.code2Session`` (``GET sns/jscode2session``: ``openid``, ``session_key``,
``unionid``; errcode 40029 invalid code, 40163 code been used, 45011 frequency limit, -1 busy),
``phonenumber.getPhoneNumber`` (``POST wxa/business/getuserphonenumber?access_token=`` with
``{"code"}`` → ``phone_info: {phoneNumber, purePhoneNumber, countryCode, watermark}``) and
``auth.getAccessToken`` (``GET cgi-bin/token?grant_type=client_credential`` → ``access_token``,
``expires_in``; 40001/42001 on calls with a bad or expired token).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import requests
import urllib3
import structlog
from wechatpy.client import WeChatClient
from wechatpy.client.api.base import BaseWeChatAPI
from wechatpy.exceptions import WeChatClientException
from wechatpy.session.memorystorage import MemoryStorage

from loyalty_core.channels import Connected

from adapters import tokens
from loyalty_core.errors import ChannelCodeInvalid, ChannelUnavailable, ValidationFailed

REAL_HOST = "https://api.weixin.qq.com"
BUSY = -1
INVALID_CODE = frozenset({40029, 40163})
TOKEN_REFUSED = frozenset({40001, 42001, 40014})
BACKOFF = (0.2, 0.4)
log = structlog.get_logger("wechat")


@dataclass(frozen=True)
class App:
    chain_id: int
    app_id: str
    app_secret: str

    @classmethod
    def of(cls, channel: Connected) -> "App":
        return cls(channel.chain_id, channel.external_id, channel.secret("app_secret") or "")


@dataclass(frozen=True)
class LoginSession:
    openid: str
    session_key: str | None
    unionid: str | None


class _TokenRefused(Exception):
    pass


class _Client(WeChatClient):
    """wechatpy's client with its URLs on ``base`` and no token fetching of its own."""

    def __init__(self, base: str, app: App, token: str | None, timeout: float) -> None:
        super().__init__(app.app_id, app.app_secret, access_token=token, session=MemoryStorage(), timeout=timeout,
                         auto_retry=False)
        self.API_BASE_URL = f"{base}/cgi-bin/"
        self._token_url = f"{base}/cgi-bin/token"
        # wechatpy's __new__ gave this client its own API groups; inspect.getmembers would also read
        # the access_token property, which fetches a token when there is none.
        for api in [value for value in vars(self).values() if isinstance(value, BaseWeChatAPI)]:
            if own := getattr(type(api), "API_BASE_URL", None):  # the others use the client's
                api.API_BASE_URL = own.replace(REAL_HOST, base)

    def fetch_access_token(self) -> dict:
        return self._fetch_access_token(url=self._token_url, params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})

    def _request(self, method, url_or_endpoint, **kwargs):
        if url_or_endpoint.endswith("sns/jscode2session"):
            # code2Session is signed by appid and secret, not by an access token: requests leaves
            # out a parameter whose value is None, and wechatpy then does not fetch a token for it.
            kwargs.setdefault("params", {})["access_token"] = None
        return super()._request(method, url_or_endpoint, **kwargs)


class WeChat:
    def __init__(self, base_url: str, cache, threads: int = 8, timeout: float = 5.0) -> None:
        self.base = base_url.rstrip("/")
        self.cache = cache  # gateway.redis.KeySpace
        self.timeout = timeout
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # --- what the gateway asks -----------------------------------------------------------
    async def code_to_session(self, app: App, code: str) -> LoginSession:
        answer = await self._call(lambda client: client.wxa.code_to_session(code), app)
        if not answer.get("openid"):
            raise ChannelUnavailable("WeChat's code2Session answered no openid")
        return LoginSession(answer["openid"], answer.get("session_key"), answer.get("unionid") or None)

    async def phone_number(self, app: App, code: str) -> str:
        """The mainland mobile number WeChat vouches for; another country's is a field error on
        ``phone_code`` (members join with a mainland number)."""
        answer = await self._with_token(app, lambda client: client.post(
            "wxa/business/getuserphonenumber", data={"code": code}, api_base_url=f"{self.base}/"))
        info = answer.get("phone_info") or {}
        if not info.get("purePhoneNumber"):
            raise ChannelUnavailable("WeChat's getuserphonenumber answered no phone")
        country = str(info.get("countryCode", "86"))
        if country != "86":
            raise ValidationFailed([{"field": "phone_code",
                                     "message": f"a +{country} phone: members join with a mainland mobile number"}])
        return str(info["purePhoneNumber"])

    async def update_member_card(self, app: App, card: dict) -> dict:
        """``card/membercard/updateuser``: ``card`` holds card_id, code and the totals (bonus, balance)."""
        return await self._with_token(app, lambda client: client.card.update_membercard(**card))

    async def send_subscribe_message(self, app: App, message: dict) -> dict:
        """``cgi-bin/message/subscribe/send``: ``message`` holds touser, template_id, data and
        optionally page, miniprogram_state and lang (wechatpy's ``send_subscribe_message`` knows
        only the first four, so the body is posted as WeChat documents it)."""
        return await self._with_token(app, lambda client: client.post("message/subscribe/send", data=message))

    # --- the access token, shared by every process through Redis ------------------------
    def _token_key(self, app: App, what: str) -> str:
        return self.cache.key(f"{{chain:{app.chain_id}}}", "wechat", what, app.app_id)

    async def access_token(self, app: App) -> str:
        return await tokens.shared(self.cache.redis, self._token_key(app, "token"), lambda: self._fetch_token(app),
                                   lambda why: ChannelUnavailable(f"WeChat: {why}"))

    async def _fetch_token(self, app: App) -> tuple[str, int]:
        answer = await self._call(lambda client: client.fetch_access_token(), app)
        token, expires_in = answer["access_token"], int(answer.get("expires_in") or 7200)
        log.info("wechat.token_fetched", app_id=app.app_id, expires_in=expires_in)
        return token, expires_in

    async def _forget_token(self, app: App, token: str) -> None:
        await tokens.forget(self.cache.redis, self._token_key(app, "token"), token)

    async def _with_token(self, app: App, call: Callable[[WeChatClient], Any]) -> Any:
        for _ in (1, 2):
            token = await self.access_token(app)
            try:
                return await self._call(call, app, token)
            except _TokenRefused:
                await self._forget_token(app, token)
        raise ChannelUnavailable("WeChat refused a freshly fetched access token")

    # --- one call, off the loop, with WeChat's errors mapped --------------------------------
    async def _call(self, call: Callable[[WeChatClient], Any], app: App, token: str | None = None) -> Any:
        for pause in (*BACKOFF, None):
            try:
                return await self._in_thread(lambda: call(_Client(self.base, app, token, self.timeout)))
            except WeChatClientException as error:
                code = _errcode(error)
                if code == BUSY and pause is not None:
                    await asyncio.sleep(pause)
                    continue
                raise self._mapped(code, error, token is not None) from None
            except requests.RequestException as error:
                # ``maybe_done``: the request may have reached WeChat (a read timeout, a reset
                # connection): whoever must not do a thing twice cannot simply send it again
                raise ChannelUnavailable(f"WeChat did not answer: {type(error).__name__}",
                                         maybe_done=not _never_sent(error)) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _mapped(code: int | None, error: WeChatClientException, with_token: bool) -> Exception:
        if code in INVALID_CODE:
            return ChannelCodeInvalid(f"WeChat refused the code (errcode {code}): ask the mini-program for a new one")
        if code in TOKEN_REFUSED and with_token:
            return _TokenRefused()
        if code is None:
            return ChannelUnavailable("WeChat answered an HTTP error")
        return ChannelUnavailable(f"WeChat answered errcode {code}: {error.errmsg}", errcode=code)

    async def _in_thread(self, work: Callable[[], Any]) -> Any:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="wechatpy")
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)


def _never_sent(error: requests.RequestException) -> bool:
    """True when the request cannot have reached WeChat: no connection was made."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(
        reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _errcode(error: WeChatClientException) -> int | None:
    try:
        return int(error.errcode) if error.errcode is not None else None
    except (TypeError, ValueError):
        return None
