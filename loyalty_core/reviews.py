"""Reviews: what waits for an operator's decision.

- ``tier_upgrade``: the member's figures reached a level with ``manual_review``; the tier stays
  where it is until a reviewer approves (then the member moves up to that level, if it is still
  above their tier) or rejects. Opened by ``tiers.raise_tier`` in the transaction of the cause.
- ``risk``: a refused order crossed one of the program's risk limits (``subject`` the limit).

At most one pending review per member, kind and subject: opening one is an insert that a
partial unique index turns into nothing while another is pending. A decision is recorded on the
review and as a journal entry without legs (key ``review:<id>``, the admin key as actor, the note
as reason), so the member's ledger shows who decided what and why; deciding again the same way
answers the review as it is, deciding otherwise is 409 ``review_decided``.
"""
from __future__ import annotations

from datetime import datetime

import orjson
from tortoise.transactions import in_transaction

from . import ledger, sql, tiers
from .errors import Conflict, NotFound
from .models import Member, Review
from .outbox import emit
from .program import Program
from .unit import Seal, seal_with

OPEN = ("INSERT INTO reviews (chain_id, member_id, kind, subject, status, detail, opened_at) "
        "VALUES ($1, $2, $3, $4, 'pending', $5, $6) ON CONFLICT DO NOTHING RETURNING id")


class ReviewDecided(Conflict):
    code, title = "review_decided", "The review was decided the other way already"


async def open_review(chain_id: int, member_id: int, kind: str, subject: str, detail: dict, now: datetime) -> int | None:
    """Open a review unless one is pending for the same member, kind and subject; its id if opened.
    Call inside the cause's transaction."""
    opened = await sql.rows(OPEN, chain_id, member_id, kind, subject, orjson.dumps(detail).decode(), now)
    if not opened:
        return None
    review_id = int(opened[0]["id"])
    await emit(chain_id, "review.opened", {"review_id": review_id, "member_id": member_id, "kind": kind,
                                           "subject": subject}, now)
    return review_id


def review_view(review: Review) -> dict:
    return {"id": review.id, "member_id": review.member_id, "kind": review.kind, "subject": review.subject,
            "status": review.status, "detail": review.detail, "opened_at": review.opened_at.isoformat(),
            "decided_at": review.decided_at.isoformat() if review.decided_at else None,
            "decided_by": review.decided_by, "note": review.note}


async def list_reviews(chain_id: int, status: str | None, after_id: int | None, limit: int) -> list[Review]:
    query = Review.filter(chain_id=chain_id)
    if status:
        query = query.filter(status=status)
    if after_id:
        query = query.filter(id__gt=after_id)
    return await query.order_by("id").limit(limit)


async def decide(chain_id: int, review_id: int, approve: bool, note: str | None, actor: str, program: Program,
                 now: datetime, seal: Seal | None = None) -> dict:
    """Approve or reject a pending review, once; an approved tier upgrade moves the member."""
    async with in_transaction():
        review = await Review.select_for_update().get_or_none(chain_id=chain_id, id=review_id)
        if review is None:
            raise NotFound(f"No review {review_id}")
        wanted = "approved" if approve else "rejected"
        if review.status != "pending":
            if review.status != wanted:
                raise ReviewDecided(f"Review {review_id} was {review.status} already")
            answer = review_view(review)
        else:
            answer = await _record(chain_id, review, wanted, note, actor, program, now)
        await seal_with(seal, answer)
    return answer


async def _record(chain_id: int, review: Review, wanted: str, note: str | None, actor: str, program: Program,
                  now: datetime) -> dict:
    review.status, review.decided_at, review.decided_by, review.note = wanted, now, actor, note
    await review.save(update_fields=["status", "decided_at", "decided_by", "note"])
    await ledger.post(chain_id, ledger.Entry(
        key=f"review:{review.id}", kind="review", member_id=review.member_id, actor=actor,
        reason=f"{review.kind} {review.subject} {wanted}" + (f": {note}" if note else ""), occurred_at=now, legs=[]))
    answer = review_view(review)
    if review.kind == "tier_upgrade" and wanted == "approved":
        member = await Member.select_for_update().get(chain_id=chain_id, id=review.member_id)
        answer["tier"] = await tiers.lift_to(member, program, review.subject, now, "review")
    await emit(chain_id, "review.decided", {"review_id": review.id, "member_id": review.member_id,
                                            "kind": review.kind, "subject": review.subject, "status": wanted}, now)
    return answer
