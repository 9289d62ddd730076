"""Schemathesis hooks: every generated request carries a valid credential for its route.

Load with ``SCHEMATHESIS_HOOKS=tests.fuzz.hooks st run ...`` (the repository root on ``PYTHONPATH``)
and give the credentials through the environment:

    LOYALTY_FUZZ_ADMIN_KEY         an owner key: ``Authorization: Bearer`` on every non-POS route
    LOYALTY_FUZZ_TERMINAL_ID       a POS terminal: ``/v1/pos/*`` requests are signed as API.md says,
    LOYALTY_FUZZ_TERMINAL_SECRET   HMAC-SHA256 over METHOD, PATH_WITH_QUERY, TIMESTAMP, NONCE, SHA256(body)
    LOYALTY_FUZZ_ADMIN_KEY_ID      (optional) that key's id: never revoked by the run, which would
                                   turn every later admin call into a 401
    LOYALTY_FUZZ_MEMBER_TOKEN      (optional) a joined member's token: ``Authorization: Bearer`` on
                                   ``/v1/mp/*`` (logging out is not fuzzed); without it those
                                   routes get the admin key, and answer 401
    LOYALTY_FUZZ_SEEDED            (optional) JSON {"member_id": [1, 2], "txn_id": ["F-1"], "sku":
                                   ["LATTE"]}: values that exist, mixed into generated path
                                   parameters and body fields of those names, so that routes get
                                   past their 404 and refusals to the rules behind them

How, in schemathesis 4 terms:

* ``schemathesis.auth.set_from_requests(auth)`` registers a ``requests`` auth object as the auth
  provider of every operation. ``requests`` calls it with the ``PreparedRequest``, after the
  body has been serialised and the URL quoted, so the signature covers the exact bytes and path
  that go on the wire (a fresh timestamp and nonce each time, retries included). A case whose
  generator removed or broke a security parameter on purpose (negative testing) gets no
  credential: schemathesis skips the provider for it and expects the 401.
* ``filter_case`` keeps the run from revoking its own admin key and its own terminal (its own member
  token is kept by leaving logging out, ``DELETE /v1/mp/session``, out of the run: ``run.UNFUZZED``); ``before_generate_path_parameters`` and ``before_generate_body`` mix the
  seeded values into half of the positive draws (a negative draw is left as it is), alongside
  the ids schemathesis itself picks up from earlier answers.
* a ``before_call`` hook gives each mutating call a fresh ``Idempotency-Key``. Generated keys
  repeat (Hypothesis favours short strings such as "0"), so many calls would be a replay or a
  422 ``idempotency_key_reused`` instead of reaching the route (in a trial with 100 examples
  per operation, fresh keys got 80 adjustments applied instead of 33). A key that the case left
  out or broke on purpose (a negative header) is kept, so ``idempotency_key_required`` and
  malformed keys are still exercised. The same hook makes most POS ``txn_id`` and
  ``refund_id`` values unique, for the same reason.

The signature is computed here from API.md, not with ``gateway.auth``, so a fault in the
gateway's own signing code would show up as 401s instead of being mirrored.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import time
import uuid
from urllib.parse import unquote

import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.value import GeneratedValue

IDEMPOTENCY_KEY = "Idempotency-Key"
BUSINESS_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # txn_id, refund_id (adapters/pos/schemas.py)
OWN_KEY_ID = os.environ.get("LOYALTY_FUZZ_ADMIN_KEY_ID", "")
SEEDED: dict[str, list] = json.loads(os.environ.get("LOYALTY_FUZZ_SEEDED") or "{}")


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"tests.fuzz.hooks needs {name} in the environment")
    return value


def pos_signature(secret: str, method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = "\n".join([method.upper(), path_with_query, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _body_bytes(body: bytes | str | None) -> bytes:
    if body is None:
        return b""
    # http.client sends a str body as Latin-1; schemathesis' JSON serialiser hands over bytes.
    return body.encode("latin-1") if isinstance(body, str) else body


class GatewayCredentials(requests.auth.AuthBase):
    """Admin key on admin and system routes, the terminal's signature on ``/v1/pos/``."""

    def __init__(self) -> None:
        self.admin_key = _env("LOYALTY_FUZZ_ADMIN_KEY")
        self.terminal_id = _env("LOYALTY_FUZZ_TERMINAL_ID")
        self.terminal_secret = _env("LOYALTY_FUZZ_TERMINAL_SECRET")
        self.member_token = os.environ.get("LOYALTY_FUZZ_MEMBER_TOKEN") or self.admin_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        path = request.path_url
        if path.startswith("/v1/mp/"):
            request.headers["Authorization"] = f"Bearer {self.member_token}"
            return request
        if not path.startswith("/v1/pos/"):
            request.headers["Authorization"] = f"Bearer {self.admin_key}"
            return request
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        request.headers.update({
            "X-Terminal-Id": self.terminal_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
            "X-Signature": pos_signature(self.terminal_secret, request.method or "GET", path, timestamp, nonce,
                                         _body_bytes(request.body)),
        })
        return request


schemathesis.auth.set_from_requests(GatewayCredentials())


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    _fresh_business_keys(case)
    if not any(header.name == IDEMPOTENCY_KEY for header in case.operation.headers):
        return
    meta = case._meta  # reading ``case.meta`` would revalidate the case before it is sent
    if meta is not None and meta.is_negative_at(ParameterLocation.HEADER):
        return
    case.headers = {**(case.headers or {}), IDEMPOTENCY_KEY: uuid.uuid4().hex}


_sales = itertools.count()


def _fresh_business_keys(case) -> None:
    """Three sales (or refunds) in four get a unique ``txn_id`` (``refund_id``): generated ones
    repeat like the keys above, and a repeat is answered as a duplicate before any pricing runs.
    The fourth keeps its generated key, so duplicates are still exercised. Only valid keys are
    changed, and into valid keys, so a case stays as positive or negative as it was."""
    route, body = (case.operation.method.upper(), case.operation.path), case.body
    if route == ("POST", "/v1/pos/orders/batch") and isinstance(body, dict) and isinstance(body.get("orders"), list):
        targets, name = [order for order in body["orders"] if isinstance(order, dict)], "txn_id"
    elif route == ("POST", "/v1/pos/orders") and isinstance(body, dict):
        targets, name = [body], "txn_id"
    elif route == ("POST", "/v1/pos/orders/{txn_id}/refunds") and isinstance(body, dict):
        targets, name = [body], "refund_id"
    else:
        return
    if next(_sales) % 4 == 0:
        return
    for target in targets:
        value = target.get(name)
        if isinstance(value, str) and BUSINESS_KEY.match(value):
            target[name] = f"{value[:51]}-{uuid.uuid4().hex[:12]}"


@schemathesis.hook
def filter_case(context, case) -> bool:
    route = (case.operation.method.upper(), case.operation.path)
    if route == ("DELETE", "/v1/admin-keys/{key_id}") and OWN_KEY_ID and _path_value(case, "key_id") == OWN_KEY_ID:
        return False
    # nor its own terminal, which signs every /v1/pos/* request after it
    return not (route == ("DELETE", "/v1/stores/{store_code}/terminals/{terminal_id}")
                and _path_value(case, "terminal_id") == os.environ.get("LOYALTY_FUZZ_TERMINAL_ID"))


def _path_value(case, name: str) -> str:
    """A path parameter as the gateway reads it (the case holds it percent-encoded)."""
    return unquote(str((case.path_parameters or {}).get(name, "")))


@schemathesis.hook
def before_generate_path_parameters(context, strategy):
    names = [p.name for p in context.operation.path_parameters if SEEDED.get(p.name)]
    if not names:
        return strategy
    return _mixed(strategy, {name: SEEDED[name] for name in names})


@schemathesis.hook
def before_generate_body(context, strategy):
    return _mixed(strategy, SEEDED) if SEEDED else strategy


def _mixed(strategy, values: dict[str, list]):
    seeded = st.fixed_dictionaries({name: st.sampled_from(choices) for name, choices in values.items()})
    return st.one_of(strategy, st.tuples(strategy, seeded).map(_with_seeded))


def _with_seeded(pair: tuple) -> object:
    generated, seeded = pair
    if isinstance(generated, GeneratedValue):
        # schemathesis wraps a negative draw (``meta`` says how it was broken: kept as it is) and a
        # positive one taken from its pool of ids seen in earlier answers (``meta`` None)
        return generated if generated.meta is not None else generated.map_value(lambda value: _with_seeded((value, seeded)))
    if isinstance(generated, dict):
        # a field is replaced only by a value of its own type, so a valid draw stays valid
        return {key: seeded[key] if key in seeded and type(value) is type(seeded[key]) else _with_seeded((value, seeded))
                for key, value in generated.items()}
    if isinstance(generated, list):
        return [_with_seeded((item, seeded)) for item in generated]
    return generated
