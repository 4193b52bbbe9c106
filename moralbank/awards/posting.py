"""Posting an award: moving its points through the ledger once its notice has ended, under the
idempotency key ``award:<id>``, so an award posts at most once even when two approvals race."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from flask_babel import gettext as _
from sqlalchemy import bindparam, select, update
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
    if award in db.session.dirty:
        db.session.flush()  # the approval made a moment ago, so the claim below sees it
    if post_award_id(award.id, actor=actor, at=at) is None:
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


def post_award_id(award_id: int, *, actor=None, at: datetime | None = None,
                  due: datetime | None = None) -> tuple[int, int] | None:
    """Post one approved award whose notice has ended (by ``due``, default always): claim it with a
    conditional UPDATE, move its points through the ledger. Core statements only, nothing for the ORM
    to flush. Returns (village id, points), or None when the award was not (or no longer) waiting."""
    require_write_transaction()
    when = at or utcnow()
    claimed = db.session.connection().execute(_posting_statements()["claim"], {
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
    ledger.transfer(debit=debit, credit=credit, amount=abs(points), code=code,
                    idempotency_key=f"award:{award_id}", actor=actor, reason=reason, award_id=award_id, at=when)
    cached = db.session.identity_map.get(db.session.identity_key(Award, award_id))
    if cached is not None:  # the caller's copy of the award, brought up to date without a read
        set_committed_value(cached, "status", AwardStatus.POSTED)
        set_committed_value(cached, "posted_at", when)
    return village_id, points


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


def post_due(now: datetime | None = None, *, actor=None) -> int:
    """Post every approved award whose notice has ended, one transaction each. Returns how many."""
    now = now or utcnow()
    ids = db.session.scalars(select(Award.id).where(Award.status == AwardStatus.APPROVED,
                                                    Award.notice_ends_at <= now)
                             .order_by(Award.id)).all()
    posted = 0
    for award_id in ids:
        with write_transaction():
            # The claim re-checks status and date: an objection that came in meanwhile wins.
            posted_now = post_award_id(award_id, actor=actor, due=now)
            if posted_now is not None:
                village_id, points = posted_now
                audit("award.post", actor=actor, village_id=village_id, target_type="award", target_id=award_id,
                      detail={"points": points})
                posted += 1
    return posted
