"""Admin API: the chain operator's console and back-office integrations (admin key)."""
from __future__ import annotations

from pydantic import BaseModel

from loyalty_core import chains, jobs, members, merge
from loyalty_core.errors import DuplicateEntry, RequestInProgress
from loyalty_core.models import AdminKey, Store
from loyalty_core.program import Program

from .. import schemas as s
from ..api import Call, Reply
from . import API

ERR_AUTH = ("unauthorized", "forbidden")


@API.route("POST", "/v1/stores", auth="admin:configure", summary="Create a store", tag="stores",
           body=s.NewStore, response=s.StoreOut, status=201, idempotent="optional",
           errors=ERR_AUTH + ("already_exists", "validation_error"))
async def create_store(call: Call):
    def shape(store: Store) -> Reply:
        return Reply(store_out(store), 201)

    store = await chains.create_store(call.chain_id, call.body.code, call.body.name, call.body.timezone,
                                      seal=call.seal(shape))
    return await call.answer(shape, store)


def store_out(store: Store) -> dict:
    return {"code": store.code, "name": store.name, "timezone": store.timezone, "created_at": store.created_at.isoformat()}


@API.route("GET", "/v1/stores", auth="admin:read", summary="List the chain's stores", tag="stores",
           query=s.PageQuery, errors=ERR_AUTH)
async def list_stores(call: Call):
    return await s.id_page(Store.filter(chain_id=call.chain_id), call.query, store_out)


@API.route("POST", "/v1/stores/{store_code}/terminals", auth="admin:configure", summary="Create a POS terminal",
           tag="stores", body=s.NewTerminal, response=s.TerminalOut, status=201, idempotent="optional",
           errors=ERR_AUTH + ("not_found", "already_exists"),
           description="Answers the terminal's signing secret once; it is stored encrypted and never shown again.")
async def create_terminal(call: Call):
    store_code = call.path_code("store_code", 32)

    def shape(issued: chains.IssuedTerminal) -> Reply:
        return Reply({"terminal_id": issued.terminal.terminal_id, "secret": issued.secret,
                      "store_code": store_code, "code": issued.terminal.code}, 201)

    issued = await chains.create_terminal(call.chain_id, store_code, call.body.code, call.services.vault,
                                          seal=call.seal(shape))
    return await call.answer(shape, issued)


@API.route("DELETE", "/v1/stores/{store_code}/terminals/{terminal_id}", auth="admin:configure",
           summary="Revoke a POS terminal", tag="stores", status=204, errors=ERR_AUTH + ("not_found",),
           description="For a lost or retired till: every request it signs answers 401 from then on. "
                       "Its orders stay; revoking again answers 404.")
async def revoke_terminal(call: Call):
    terminal_id = call.path_code("terminal_id", 40)
    await chains.revoke_terminal(call.chain_id, call.path_code("store_code", 32), terminal_id,
                                 call.services.clock.now())
    call.services.terminals.drop(terminal_id)  # other processes refuse it within a second
    return Reply(None, 204)


@API.route("GET", "/v1/program", auth="admin:read", summary="The chain's loyalty program", tag="program",
           response=Program, errors=ERR_AUTH)
async def get_program(call: Call):
    return (await call.program()).model_dump(mode="json")


@API.route("PUT", "/v1/program", auth="admin:configure", summary="Replace the chain's loyalty program",
           tag="program", body=Program, response=Program, errors=ERR_AUTH + ("validation_error",),
           description="The whole program, validated as one document; missing sections take their defaults.")
async def put_program(call: Call):
    program = await chains.put_program(call.chain_id, call.body)
    call.services.programs.drop(call.chain_id)  # other processes see it within a second
    return program.model_dump(mode="json")


@API.route("POST", "/v1/members", auth="admin:members", summary="Register a member", tag="members",
           body=s.NewMember, response=s.MemberOut, status=201, idempotent=True,
           errors=ERR_AUTH + ("already_exists", "validation_error", "idempotency_key_required"),
           description="Credits the program's welcome points (behaviors.register) once per phone, ever.")
async def register_member(call: Call):
    program = await call.program()
    now = call.services.clock.now()
    body = call.body
    new = members.NewMember(phone=body.phone, name=body.name, birthday=body.birthday, card_no=body.card_no,
                            store_code=body.store_code, channel="admin")
    return await registered(call, new, program, now)


async def registered(call: Call, new: members.NewMember, program, now) -> Reply:
    """Register ``new`` and answer the member's view (sealed with the registration)."""
    async def shape(member) -> Reply:
        return Reply(await members.member_view(member, program, call.services.vault, now), 201)

    member = await members.register_member(call.chain_id, new, program, call.services.vault, now,
                                           seal=call.seal(shape))
    return await call.answer(shape, member)


@API.route("GET", "/v1/members", auth="admin:read", summary="Search members", tag="members",
           query=s.MemberQuery, response=s.MemberPage, errors=ERR_AUTH)
async def search_members(call: Call):
    q = call.query
    found = await members.search_members(call.chain_id, call.services.vault, phone=q.phone, identity=q.identity,
                                         tier=q.tier, tag=q.tag, unclaimed=q.unclaimed, after_id=s.decode_cursor(q.cursor),
                                         limit=q.limit + 1)
    found, cursor = s.cut(found, q.limit)
    program, now = await call.program(), call.services.clock.now()
    return {"items": [await members.member_view(m, program, call.services.vault, now) for m in found],
            "next_cursor": cursor}


@API.route("PUT", "/v1/members/{member_id}/tags", auth="admin:members", summary="Set a member's manual tags",
           tag="members", body=s.Tags, response=s.MemberOut, errors=ERR_AUTH + ("not_found", "validation_error",
                                                                               "member_erased"),
           description="The whole set: tags not sent are removed. Each tag 1-32 characters, at most 50, kept in the "
                       "order sent, each once. GET /v1/members?tag= finds the members with a tag.")
async def put_tags(call: Call):
    member = await members.set_tags(call.chain_id, call.path_id("member_id"), call.body.tags)
    return await members.member_view(member, await call.program(), call.services.vault, call.services.clock.now())


@API.route("POST", "/v1/members/{member_id}/merge", auth="admin:members", summary="Merge another record into this member",
           tag="members", body=s.MergeIn, response=s.MemberOut, idempotent=True,
           errors=ERR_AUTH + ("not_found", "validation_error", "member_erased"),
           description="One person, two records: balances, lots, pending points, coupons, identities, orders and "
                       "tier figures of from_member_id move here in one transaction (a journal entry with who and "
                       "why); the target keeps the higher tier; the source is closed (merged_into) and its phone "
                       "or id then finds this member.")
async def merge_member(call: Call):
    program, now = await call.program(), call.services.clock.now()

    async def shape(target) -> Reply:  # read inside the merge's transaction: the answer commits with it
        return Reply(await members.member_view(target, program, call.services.vault, now))

    target = await merge.merge(call.chain_id, call.path_id("member_id"), call.body.from_member_id, program,
                               call.principal.actor, now, seal=call.seal(shape))
    return await call.answer(shape, target)


@API.route("GET", "/v1/members/{member_id}", auth="admin:read", summary="A member", tag="members",
           response=s.MemberOut, errors=ERR_AUTH + ("not_found",))
async def get_member(call: Call):
    member = await members.get_member(call.chain_id, call.path_id("member_id"))
    return await members.member_view(member, await call.program(), call.services.vault, call.services.clock.now())


@API.route("GET", "/v1/members/{member_id}/ledger", auth="admin:read", summary="A member's ledger, newest first",
           tag="members", query=s.PageQuery, response=s.LedgerPage, errors=ERR_AUTH + ("not_found",))
async def member_ledger(call: Call):
    member = await members.get_member(call.chain_id, call.path_id("member_id"))
    items = await members.ledger_entries(call.chain_id, member.id, s.decode_cursor(call.query.cursor),
                                         call.query.limit + 1)
    items, cursor = s.cut(items, call.query.limit, id_of=lambda entry: entry["id"])
    return {"items": items, "next_cursor": cursor}


@API.route("POST", "/v1/members/{member_id}/adjustments", auth="admin:members", summary="Correct a balance by hand",
           tag="members", body=s.Adjustment, response=s.AdjustmentOut, status=201, idempotent=True,
           errors=ERR_AUTH + ("not_found", "insufficient_points", "insufficient_stored_value", "validation_error",
                              "member_erased"),
           description="Audited with the admin key and the reason. A debit never takes a balance below zero.")
async def adjust(call: Call):
    body = call.body

    def shape(result: dict) -> Reply:
        return Reply(result, 201)

    try:
        result = await members.adjust(call.chain_id, call.path_id("member_id"), body.account, body.amount,
                                      body.reason, call.principal.actor, await call.program(),
                                      call.services.clock.now(), cause=f"claim:{call.claim_id}",
                                      seal=call.seal(shape))
    except DuplicateEntry:
        raise RequestInProgress("This request is being applied already; retry to get its answer") from None
    return await call.answer(shape, result)


@API.route("POST", "/v1/members/{member_id}/freeze", auth="admin:members", summary="Freeze a member", tag="members",
           body=s.Freeze, response=s.MemberOut, idempotent=True, errors=ERR_AUTH + ("not_found", "member_erased"),
           description="A frozen member can neither earn nor spend until unfrozen.")
async def freeze(call: Call):
    member = await members.set_frozen(call.chain_id, call.path_id("member_id"), True, call.body.reason)
    return await members.member_view(member, await call.program(), call.services.vault, call.services.clock.now())


@API.route("POST", "/v1/members/{member_id}/unfreeze", auth="admin:members", summary="Unfreeze a member",
           tag="members", response=s.MemberOut, idempotent=True, errors=ERR_AUTH + ("not_found", "member_erased"))
async def unfreeze(call: Call):
    member = await members.set_frozen(call.chain_id, call.path_id("member_id"), False, None)
    return await members.member_view(member, await call.program(), call.services.vault, call.services.clock.now())


@API.route("DELETE", "/v1/members/{member_id}", auth="admin:members", summary="Erase a member's personal data (PIPL)",
           tag="members", status=204, errors=ERR_AUTH + ("not_found",),
           description="Phone, name, birthday, card and identities are deleted; the ledger stays, anonymised. "
                       "Welcome points are never granted to that phone again.")
async def erase_member(call: Call):
    await members.erase(call.chain_id, call.path_id("member_id"), call.services.clock.now())
    return Reply(None, 204)


@API.route("POST", "/v1/admin-keys", auth="admin:keys", summary="Create an admin key", tag="admin keys",
           body=s.NewAdminKey, response=s.AdminKeyOut, status=201, idempotent="optional",
           errors=ERR_AUTH + ("validation_error",), description="The key itself is shown once; only its hash is kept.")
async def create_admin_key(call: Call):
    def shape(issued: chains.IssuedKey) -> Reply:
        return Reply({"id": issued.id, "role": issued.role, "prefix": issued.prefix, "label": call.body.label,
                      "created_at": issued.created_at.isoformat(), "key": issued.key}, 201)

    issued = await chains.issue_admin_key(call.chain_id, call.body.role, call.principal.key_id, call.body.label,
                                          seal=call.seal(shape))
    return await call.answer(shape, issued)


@API.route("GET", "/v1/admin-keys", auth="admin:keys", summary="List admin keys (never the keys themselves)",
           tag="admin keys", errors=ERR_AUTH)
async def list_admin_keys(call: Call):
    keys = await AdminKey.filter(chain_id=call.chain_id).order_by("id")
    return {"items": [{"id": k.id, "role": k.role, "prefix": k.prefix, "label": k.label,
                       "created_at": k.created_at.isoformat(),
                       "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in keys],
            "next_cursor": None}


@API.route("DELETE", "/v1/admin-keys/{key_id}", auth="admin:keys", summary="Revoke an admin key", tag="admin keys",
           status=204, errors=ERR_AUTH + ("not_found", "last_owner_key"))
async def revoke_admin_key(call: Call):
    await chains.revoke_admin_key(call.chain_id, call.path_id("key_id"), call.services.clock.now())
    return Reply(None, 204)


class JobOut(BaseModel):
    job: str
    processed: int
    points: int
    ran_at: str


@API.route("POST", "/v1/jobs/{name}", auth="admin:jobs", summary="Run a scheduled job now", tag="jobs",
           response=JobOut, idempotent="optional", errors=("unauthorized", "forbidden", "unknown_job"),
           description="vest_points, expire_points, evaluate_tiers (lowers tiers whose retention is over while "
                       "the window metric is below their threshold). Safe to run twice or alongside the worker.")
async def run_job(call: Call):
    now = call.services.clock.now()
    report = await jobs.run_job(call.request.match_info["name"], call.chain_id, now)
    return report.as_dict(now)
