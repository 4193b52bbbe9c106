"""Posting an award: moving its points through the ledger once its notice has ended, under the
idempotency key ``award:<id>``, so an award posts at most once even when two approvals race."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from flask_babel import gettext as _
from functools import lru_cache

from sqlalchemy import bindparam, inspect, select, update
from sqlalchemy.orm.attributes import set_committed_value

from .. import periods
from ..audit.service import record as audit
from ..database import UTCDateTime, require_write_transaction, utcnow, write_transaction
from ..errors import Invalid
from ..extensions import db
from ..ledger import service as ledger
from ..people.models import Household
from .models import Award, AwardStatus, Rule


def post_award(award: Award, *, actor=None, at: datetime | None = None) -> Award:
    """Move an approved award's points through the ledger and mark it posted (idempotent).
    The caller holds the award (``_lock_award``) and may have just approved it in memory."""
    require_write_transaction()
    if award.status == AwardStatus.POSTED:
        return award
    if award.status != AwardStatus.APPROVED:
        raise Invalid(_("只有已通过的记录才能入账"), code="not_postable")
    if post_award_id(award.id, actor=actor, at=at, pending=_pending_changes(award)) is None:
        # Another transaction moved it first (a caller that did not lock the award): posted is fine.
        db.session.refresh(award)
        if award.status != AwardStatus.POSTED:
            raise Invalid(_("只有已通过的记录才能入账"), code="not_postable")
    return award


_POSTING: dict = {}


def _posting_statements() -> dict:
    """The posting hot path's statements, built once per dialect (see the ledger's ``_statements``)."""
    connection = db.session.connection()
    dialect = connection.dialect.name
    if dialect not in _POSTING:
        awards, rules = Award.__table__, Rule.__table__
        _POSTING[dialect] = {
            # Claims the award: only one transaction moves it from approved to posted.
            "claim": update(awards).where(awards.c.id == bindparam("award_id"),
                                          awards.c.status == AwardStatus.APPROVED,
                                          awards.c.notice_ends_at <= bindparam("due", type_=UTCDateTime()))
            .values(status=AwardStatus.POSTED, posted_at=bindparam("at", type_=UTCDateTime()))
            .returning(awards.c.village_id, awards.c.household_id, awards.c.points, awards.c.quantity,
                       select(rules.c.title).where(rules.c.id == awards.c.rule_id).scalar_subquery()),
        }
    return _POSTING[dialect]


def _pending_changes(award: Award) -> dict | None:
    """The caller's unflushed changes to ``award`` (an approval made a moment ago, the award locked
    by ``_lock_award``): the columns changed and the status the row still has, or None."""
    if award not in db.session.dirty:
        return None
    state = inspect(award)
    changed = {attr.key: attr.value for attr in state.attrs
               if attr.key in Award.__table__.c and attr.history.has_changes()}
    if "status" not in changed:
        return None
    history = state.attrs.status.history
    if not history.deleted or changed["status"] != AwardStatus.APPROVED:
        return None
    return {"values": changed, "stored_status": history.deleted[0], "notice_ends_at": award.notice_ends_at}


@lru_cache(maxsize=16)
def _claim_pending(columns: frozenset):
    """The claim of an award approved in this transaction and not flushed yet: its approval and its
    posting in one UPDATE (the row is locked by the caller, its stored status checked)."""
    awards, rules = Award.__table__, Rule.__table__
    values = {name: bindparam(f"v_{name}", type_=awards.c[name].type) for name in columns if name != "status"}
    return (update(awards).where(awards.c.id == bindparam("award_id"),
                                 awards.c.status == bindparam("stored_status"))
            .values(status=AwardStatus.POSTED, posted_at=bindparam("at", type_=UTCDateTime()), **values)
            .returning(awards.c.village_id, awards.c.household_id, awards.c.points, awards.c.quantity,
                       select(rules.c.title).where(rules.c.id == awards.c.rule_id).scalar_subquery()))


def post_award_id(award_id: int, *, actor=None, at: datetime | None = None,
                  due: datetime | None = None, pending: dict | None = None) -> tuple[int, int] | None:
    """Post one approved award whose notice has ended (by ``due``, default always): claim it with a
    conditional UPDATE, move its points through the ledger. Core statements only, nothing for the ORM
    to flush. Returns (village id, points), or None when the award was not (or no longer) waiting.

    ``pending`` (from ``post_award``): the caller's approval of the award, not yet written, which the
    claim writes with the posting (one UPDATE instead of two)."""
    require_write_transaction()
    when = at or utcnow()
    connection = db.session.connection()
    if pending is not None:
        values = pending["values"]
        if pending["notice_ends_at"] is None or pending["notice_ends_at"] > (due or _FAR_FUTURE):
            return None
        claimed = connection.execute(_claim_pending(frozenset(values)), {
            "award_id": award_id, "at": when, "stored_status": pending["stored_status"],
            **{f"v_{name}": value for name, value in values.items() if name != "status"}}).one_or_none()
        cached = db.session.identity_map.get(db.session.identity_key(Award, award_id))
        if claimed is not None and cached is not None:
            for name, value in values.items():  # written: nothing left for the ORM to flush
                set_committed_value(cached, name, value)
    else:
        claimed = connection.execute(_posting_statements()["claim"], {
            "award_id": award_id, "at": when, "due": due or _FAR_FUTURE}).one_or_none()
    if claimed is None:
        return None
    village_id, household_id, points, quantity, title = claimed
    reason = title if quantity == 1 else f"{title} ×{quantity}"
    if points > 0:
        credit, debit = ledger.household_and_village_account(household_id, village_id, "issuance")
        code = "award"
    else:
        debit, credit = ledger.household_and_village_account(household_id, village_id, "sink")
        code = "deduction"
    posted = ledger.transfer(debit=debit, credit=credit, amount=abs(points), code=code,
                             idempotency_key=f"award:{award_id}", actor=actor, reason=reason, award_id=award_id,
                             at=when)
    if not posted.replayed:
        _posted_now()[award_id] = posted.transfer
    cached = db.session.identity_map.get(db.session.identity_key(Award, award_id))
    if cached is not None:  # the caller's copy of the award, brought up to date without a read
        set_committed_value(cached, "status", AwardStatus.POSTED)
        set_committed_value(cached, "posted_at", when)
    return village_id, points


def _posted_now() -> dict:
    """Transfers that posted awards in the session's current transaction, by award id: what the
    answer shows about them is known without reading them back (they cannot be reversed yet)."""
    session = db.session()
    transaction = (session.get_nested_transaction() or session.get_transaction())
    owner, posted = session.info.get("awards_posted_now", (None, None))
    if owner is not transaction or posted is None:
        posted = {}
        session.info["awards_posted_now"] = (transaction, posted)
    return posted


def posted_in_this_transaction(award_id: int):
    """The transfer that posted ``award_id`` in the current transaction, if it did (else None)."""
    session = db.session()
    owner, posted = session.info.get("awards_posted_now", (None, None))
    if posted is None or owner is not (session.get_nested_transaction() or session.get_transaction()):
        return None
    return posted.get(award_id)


def forget_posted(award_id: int) -> None:
    """The award's posting is no longer what the answer should assume (it was reversed)."""
    _posted_now().pop(award_id, None)


#: "due" for a caller that has already decided the award is due
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=timezone.utc)


def record_award(household: Household, rule: Rule, *, proposer=None, approver=None, quantity: int = 1,
                 occurred_on: date | None = None, note: str | None = None, at: datetime | None = None) -> Award:
    """Create an award already decided and post it (the demo history and imports of paper records)."""
    when = at or utcnow()
    award = Award(village_id=household.village_id, household_id=household.id, rule_id=rule.id,
                  quantity=quantity, points=rule.points * quantity, status=AwardStatus.APPROVED, note=note,
                  occurred_on=occurred_on or periods.today(when), proposed_by_id=getattr(proposer, "id", None),
                  proposed_at=when - timedelta(hours=2), decided_by_id=getattr(approver, "id", None),
                  decided_at=when, notice_ends_at=when)
    db.session.add(award)
    db.session.flush()
    return post_award(award, actor=approver, at=when)


#: awards posted per transaction by ``post_due``
POST_DUE_BATCH = 200


def post_due(now: datetime | None = None, *, actor=None, batch: int = POST_DUE_BATCH) -> int:
    """Post every approved award whose notice has ended, ``batch`` to a transaction (one commit,
    one bump of each village's board, for many awards). Returns how many.

    Each award is still claimed by its own conditional UPDATE, so an objection that came in
    meanwhile wins. Should a batch fail, its awards are posted again one transaction each, so
    one bad award holds back no other."""
    now = now or utcnow()
    ids = db.session.scalars(select(Award.id).where(Award.status == AwardStatus.APPROVED,
                                                    Award.notice_ends_at <= now)
                             .order_by(Award.id)).all()
    posted = 0
    for start in range(0, len(ids), max(1, batch)):
        chunk = ids[start:start + max(1, batch)]
        try:
            with write_transaction():
                posted_now = sum(_post_due_one(award_id, actor=actor, due=now) for award_id in chunk)
        except Exception:
            if len(chunk) == 1:
                raise
            posted_now = 0
            for award_id in chunk:
                with write_transaction():
                    posted_now += _post_due_one(award_id, actor=actor, due=now)
        posted += posted_now
    return posted


def _post_due_one(award_id: int, *, actor, due: datetime) -> int:
    """Inside post_due's transaction: post one award if it is still due (1), else 0."""
    # The claim re-checks status and date: an objection that came in meanwhile wins.
    posted_now = post_award_id(award_id, actor=actor, due=due)
    if posted_now is None:
        return 0
    village_id, points = posted_now
    audit("award.post", actor=actor, village_id=village_id, target_type="award", target_id=award_id,
          detail={"points": points})
    return 1
