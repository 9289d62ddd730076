"""Routes declared once: the aiohttp route, its authentication, body schema, idempotency and
its OpenAPI entry all come from the same ``Operation``.

A handler gets a ``Call`` (principal, parsed body and query, services) and returns a dict
(200) or a ``Reply``. Business rules stay in ``loyalty_core``; handlers only translate.
"""
from __future__ import annotations

import asyncio
import inspect
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Awaitable, Callable

import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from loyalty_core import chains, channels
from loyalty_core.errors import (InvalidJson, JoinRequired, LoyaltyError, NotFound, RequestInProgress,
                                 ValidationFailed, field_errors)
from loyalty_core.program import Program
from loyalty_core.unit import Opening, Seal

from . import auth, idempotency
from .problems import from_error
from .services import SERVICES, Services

JSON = "application/json"
CODE = re.compile(r"^[A-Za-z0-9_.:-]+$")
log = structlog.get_logger("gateway")


@dataclass
class Reply:
    payload: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    request: web.Request
    services: Services
    principal: auth.Principal | None
    body: Any
    query: Any
    claim: idempotency.Claim | None = None  # the Idempotency-Key claim this call runs under, if any
    claiming: idempotency.Claiming | None = None  # or the claim its first read sends (claims_with_read)
    sealed: tuple[Any, web.StreamResponse] | None = None  # a result and its answer, written in the core's transaction
    answered_sealed: bool = False  # the handler answered what the core stored (nothing left to store)

    @property
    def held_claim(self) -> idempotency.Claim | None:
        """The claim this call runs under: taken before it, or by its first read."""
        return self.claim or (self.claiming.claim if self.claiming is not None else None)

    @property
    def claim_id(self) -> int | None:
        return self.claim.id if self.claim else None

    def seal(self, shape: Callable[[Any], Reply | Awaitable[Reply]]) -> Seal | None:
        """The seal a handler passes to a core action: inside its transaction the core stores
        ``shape(result)`` as the Idempotency-Key's answer (with its own last statement where it
        can), so that the change and its answer commit together. A claim whose lease was taken
        over meanwhile stores nothing, and the whole action rolls back (409 ``request_in_progress``)."""
        if self.claim is None and self.claiming is None:
            return None
        vault = self.services.vault

        async def write(result: Any) -> tuple[str, list]:
            claim = self.held_claim
            if claim is None:
                raise RuntimeError("a claims_with_read handler sealed a result before its first read claimed the key")
            response = render(await _shaped(shape, result))
            self.sealed = (result, response)
            return idempotency.finishing(claim, response.status, response.text or "", vault)

        return Seal(write, lambda: RequestInProgress("This request's Idempotency-Key was taken over by a retry; "
                                                     "send it again to get its answer"))

    def opening(self) -> Opening | None:
        """What a ``claims_with_read`` handler hands its first read: the key's claim."""
        return self.claiming.opening() if self.claiming is not None else None

    async def answer(self, shape: Callable[[Any], Reply | Awaitable[Reply]], result: Any):
        """What the handler returns: the answer stored with ``result``, or ``shape(result)`` when
        the core stored none for it (its transaction rolled back and it answered a twin's result)."""
        if self.sealed is not None and self.sealed[0] is result:
            self.answered_sealed = True
            return self.sealed[1]
        return await _shaped(shape, result)

    def path_id(self, name: str) -> int:
        """An integer id from the path; anything else is simply not found."""
        value = self.request.match_info[name]
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise NotFound(f"No such {name.removesuffix('_id')} {value!r}")
        return int(value)

    def path_code(self, name: str, longest: int, missing: type[NotFound] = NotFound) -> str:
        """A code from the path (a store code, a txn_id, a terminal id): one that no such code could
        be (too long, or outside ``A-Z a-z 0-9 _ . : -``) is simply not found."""
        value = self.request.match_info[name]
        if not (value.isascii() and len(value) <= longest and CODE.match(value)):
            raise missing(f"No such {name.replace('_', ' ')} {value[:80]!r}")
        return value

    @property
    def member_id(self) -> int:
        """The member a member token speaks for; a token that has not joined yet is 403 ``join_required``."""
        assert self.principal is not None and self.principal.kind == "member"
        if self.principal.member_id is None:
            raise JoinRequired("This WeChat account has not joined yet: POST /v1/mp/join first")
        return self.principal.member_id

    @property
    def chain_id(self) -> int:
        assert self.principal is not None
        return self.principal.chain_id

    async def program(self) -> Program:
        """The caller's chain's program, parsed once and kept for a second (``Services.programs``)."""
        return await self.program_of(self.chain_id)

    async def connected(self, platform: str, external_id: str) -> channels.Connected:
        """The connected app or merchant a login or a webhook names (any chain's: it names its
        chain), kept for a second (``Services.channels``); 404 when none is."""
        vault = self.services.vault
        found = await self.services.channels.get((platform, external_id),
                                                 lambda: channels.connected(platform, external_id, vault))
        if found is None:
            raise NotFound(f"No {platform} {external_id!r} is connected")
        return found

    async def program_of(self, chain_id: int) -> Program:
        """A chain's program, for a call whose chain is not its caller's (a login names its app)."""
        return await self.services.programs.get(chain_id, lambda: chains.get_program(chain_id))


Handler = Callable[[Call], Awaitable[Any]]


async def _shaped(shape: Callable[[Any], Reply | Awaitable[Reply]], result: Any) -> Reply:
    reply = shape(result)
    return await reply if inspect.isawaitable(reply) else reply


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    auth: str | None
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    idempotent: bool | str = False  # True: key required; "optional": honoured when sent
    reads: bool = False  # changes nothing (a till's read: its nonce is recorded while it runs)
    claims_with_read: bool = False  # its Idempotency-Key is claimed by its first read (Call.opening)
    errors: tuple[str, ...] = ()
    description: str = ""


class Api:
    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def route(self, method: str, path: str, *, auth: str | None, summary: str, tag: str, **options: Any):
        def register(handler: Handler) -> Handler:
            self.operations.append(Operation(method, path, handler, auth, summary, tag, **options))
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for operation in self.operations:
            app.router.add_route(operation.method, operation.path, _endpoint(operation))


def _endpoint(operation: Operation):
    async def endpoint(request: web.Request) -> web.StreamResponse:
        return await dispatch(operation, request)

    endpoint.__name__ = operation.handler.__name__
    return endpoint


async def dispatch(operation: Operation, request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    raw = await request.read()
    if operation.reads and operation.auth == "terminal":
        return await _read_beside_nonce(operation, request, raw, services)
    principal = await authenticate(operation, request, raw, services)
    key = _idempotency_key(operation, request)
    call = Call(request, services, principal, parse_body(operation, raw), parse_query(operation, request))
    if key is None:
        return render(await _run(operation, call))
    assert principal is not None
    lease = timedelta(seconds=services.settings.idempotency_lease_seconds)
    print_ = idempotency.fingerprint(request.method, request.raw_path, raw)

    async def claim_now() -> idempotency.Claim | idempotency.Replay:
        return await idempotency.claim(principal.chain_id, key, print_, services.clock.now(), services.vault, lease)

    if operation.claims_with_read:
        claiming = idempotency.Claiming(principal.chain_id, key, print_, services.clock.now(), lease,
                                        services.clock.now)
        call.claiming = claiming
        try:
            outcome = await _outcome(operation, call)
        except idempotency.KeyTaken:  # stopped at its first read, having changed nothing
            outcome, call = None, Call(request, services, principal, call.body, call.query)
        finally:
            claiming.stop_renewing()
        if outcome is not None:
            if claiming.claim is not None:
                return await _settled(call, claiming.claim, outcome, services)
            # it ended before its first read (a refusal, a resend answered by its first result):
            # claimed now, to store that answer, unless the key's first request answers instead
            claimed = await claim_now()
            if isinstance(claimed, idempotency.Replay):
                return _replayed(claimed)
            return await _settled(call, claimed, outcome, services)
    claimed = await claim_now()
    if isinstance(claimed, idempotency.Replay):
        return _replayed(claimed)
    call.claim = claimed
    renewing = idempotency.Renewing(claimed, services.clock.now, lease)
    try:
        outcome = await _outcome(operation, call)
    finally:
        renewing.cancel()
    return await _settled(call, claimed, outcome, services)


def _replayed(stored: idempotency.Replay) -> web.StreamResponse:
    content_type = "application/problem+json" if stored.status >= 400 else JSON
    return web.Response(status=stored.status, text=stored.body, content_type=content_type,
                        headers={"Idempotent-Replayed": "true"})


async def _outcome(operation: Operation, call: Call) -> web.StreamResponse | LoyaltyError:
    """The handler's answer, or the refusal it raised; on anything else its claim is released."""
    try:
        return render(await _run(operation, call))
    except LoyaltyError as error:
        return error
    except idempotency.KeyTaken:
        raise
    except BaseException:
        if (claim := call.held_claim) is not None:
            await idempotency.release(claim)
        raise


async def _settled(call: Call, claimed: idempotency.Claim, outcome: web.StreamResponse | LoyaltyError,
                   services: Services) -> web.StreamResponse:
    """The outcome stored under the key (2xx and business refusals; a claim whose answer is not
    kept, or could not be stored, is released), then answered or raised."""
    refused = isinstance(outcome, LoyaltyError)
    try:
        if refused and idempotency.storable(outcome.status, outcome.code):
            await _finish(claimed, outcome.status, from_error(outcome).text or "", services)
        elif refused:
            await idempotency.release(claimed)
        elif not call.answered_sealed:  # a handler of many transactions (a job, a batch): stored after them
            await _finish(claimed, outcome.status, outcome.text or "", services)
    except BaseException:
        await idempotency.release(claimed)
        raise
    if refused:
        raise outcome
    return outcome


async def _read_beside_nonce(operation: Operation, request: web.Request, raw: bytes,
                             services: Services) -> web.StreamResponse:
    """A till's read (a scan, a preview): its nonce is recorded in Redis while the read runs, not
    before it, so that the till waits for one round trip instead of two. Nothing is written, and
    the nonce's verdict comes first: a replayed request is refused whatever the read found."""
    principal, first_use = await auth.terminal_signed(request, raw, services)
    nonce = asyncio.ensure_future(first_use)
    try:
        call = Call(request, services, principal, parse_body(operation, raw), parse_query(operation, request))
        response = render(await _run(operation, call))
    except Exception:
        await nonce  # a replay (or Redis down) is the answer, whatever the read raised
        raise
    except BaseException:  # cancelled: nothing is answered
        nonce.cancel()
        raise
    await nonce
    return response


async def _finish(claimed: idempotency.Claim, status: int, text: str, services: Services) -> None:
    if not await idempotency.finish(claimed, status, text, services.vault):
        log.warning("idempotency.lease_lost", claim_id=claimed.id, detail="a retry took the key over; its answer stands")


def _idempotency_key(operation: Operation, request: web.Request) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if operation.idempotent is True or (operation.idempotent == "optional" and header is not None):
        return idempotency.read_key(header)
    return None


async def _run(operation: Operation, call: Call) -> Reply | web.StreamResponse:
    result = await operation.handler(call)
    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, Reply):
        return result
    return Reply(result, operation.status)


def render(reply: Reply | web.StreamResponse) -> web.StreamResponse:
    if isinstance(reply, web.StreamResponse):
        return reply
    if reply.status == 204:
        return web.Response(status=204, headers=reply.headers)
    return web.Response(status=reply.status, body=orjson.dumps(reply.payload), content_type=JSON,
                        headers=reply.headers)


async def authenticate(operation: Operation, request: web.Request, raw: bytes, services: Services):
    if operation.auth is None:
        return None
    if operation.auth == "terminal":
        return await auth.terminal(request, raw, services)
    if operation.auth == "member":
        return await auth.member(request, services)
    kind, _, right = operation.auth.partition(":")
    if kind == "admin":
        return await auth.admin(request, right)
    raise RuntimeError(f"unknown auth {operation.auth}")


def parse_body(operation: Operation, raw: bytes) -> Any:
    if operation.body is None:
        return None
    if not raw.strip():
        raise InvalidJson("This request needs a JSON body")
    try:
        parsed = operation.body.model_validate_json(raw, strict=True)
    except ValidationError as error:
        raise as_problem(error) from None
    if b"\\u0000" in raw:  # cheap test first: only a body that spells the escape is walked
        refuse_nul(orjson.loads(raw))
    return parsed


def refuse_nul(value: Any, path: str = "") -> None:
    """U+0000 anywhere in a body is a 422: PostgreSQL's text and JSON columns cannot hold it."""
    if isinstance(value, str) and "\x00" in value:
        raise ValidationFailed([{"field": path or "(body)", "message": "must not contain U+0000"}])
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            raise ValidationFailed([{"field": path or "(body)", "message": "keys must not contain U+0000"}])
        refuse_nul(item, f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key))


def parse_query(operation: Operation, request: web.Request) -> Any:
    if operation.query is None:
        return None
    try:
        parsed = operation.query.model_validate(dict(request.query))
    except ValidationError as error:
        raise as_problem(error) from None
    refuse_nul(dict(request.query))
    return parsed


def as_problem(error: ValidationError) -> LoyaltyError:
    problems = error.errors(include_url=False)
    if any(p["type"] == "json_invalid" for p in problems):
        return InvalidJson("The body is not valid JSON: " + problems[0]["msg"])
    return ValidationFailed(field_errors(problems))
