"""Verbs of the rule catalogue and the award life cycle (the foundation's part).

Posting an award moves its points through the ledger: issuance → household for
a positive rule, household → the village's deduction sink for a negative one,
under the idempotency key ``award:<id>``, so an award posts at most once even
when two approvals race.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import select

from ..audit.service import record as audit
from ..database import in_write_transaction, utcnow
from ..errors import Invalid
from ..extensions import db
from ..ledger import service as ledger
from ..people.models import Area, Household
from .models import CAP_PERIODS, CATEGORIES, Award, Rule


def create_rule(village: Area, *, category: str, title: str, points: int, cap_count: int | None = None,
                cap_period: str | None = None, photo_required: bool = False, actor=None) -> Rule:
    """Add a catalogue item (version 1) to a village."""
    if category not in CATEGORIES:
        raise Invalid(_("未知类别"), fields={"category": list(CATEGORIES)})
    if isinstance(points, bool) or not isinstance(points, int) or points == 0:
        raise Invalid(_("分值必须是非零整数"), fields={"points": [_("非零整数")]})
    if (category == "deduction") != (points < 0):
        raise Invalid(_("扣分项的分值应为负数，其他类别为正数"), fields={"points": [_("正负号与类别不符")]})
    if (cap_count is None) != (cap_period is None) or (cap_period and cap_period not in CAP_PERIODS):
        raise Invalid(_("上限需要次数和周期（月/季/年）"), fields={"cap": [_("次数和周期一起填")]})
    rule = Rule(village_id=village.id, category=category, title=title.strip(), points=points,
                cap_count=cap_count, cap_period=cap_period, photo_required=photo_required)
    db.session.add(rule)
    db.session.flush()
    rule.family_id = rule.id
    audit("rule.create", actor=actor, village_id=village.id, target=rule,
          detail={"title": rule.title, "points": points})
    return rule


def post_award(award: Award, *, actor=None, at: datetime | None = None) -> Award:
    """Move an approved award's points through the ledger and mark it posted (idempotent)."""
    assert in_write_transaction()
    if award.status == "posted":
        return award
    if award.status != "approved":
        raise Invalid(_("只有已通过的记录才能入账"), code="not_postable")
    household_account = ledger.household_account(award.household_id)
    rule = db.session.get(Rule, award.rule_id)
    reason = rule.title if award.quantity == 1 else f"{rule.title} ×{award.quantity}"
    if award.points > 0:
        debit, credit, code = ledger.village_account(award.village_id, "issuance"), household_account, "award"
    else:
        debit, credit, code = household_account, ledger.village_account(award.village_id, "sink"), "deduction"
    ledger.transfer(debit=debit, credit=credit, amount=abs(award.points), code=code,
                    idempotency_key=f"award:{award.id}", actor=actor, reason=reason, award_id=award.id, at=at)
    award.status = "posted"
    award.posted_at = at or utcnow()
    return award


def record_award(household: Household, rule: Rule, *, proposer=None, approver=None, quantity: int = 1,
                 occurred_on: date | None = None, note: str | None = None, at: datetime | None = None) -> Award:
    """Create an award already decided and post it (the demo history and imports of paper records)."""
    when = at or utcnow()
    award = Award(village_id=household.village_id, household_id=household.id, rule_id=rule.id,
                  quantity=quantity, points=rule.points * quantity, status="approved", note=note,
                  occurred_on=occurred_on or when.date(), proposed_by_id=getattr(proposer, "id", None),
                  proposed_at=when - timedelta(hours=2), decided_by_id=getattr(approver, "id", None),
                  decided_at=when, notice_ends_at=when)
    db.session.add(award)
    db.session.flush()
    return post_award(award, actor=approver, at=when)


def post_due(now: datetime | None = None, *, actor=None) -> int:
    """Post every approved award whose notice has ended. Returns how many were posted."""
    now = now or utcnow()
    ids = db.session.scalars(select(Award.id).where(Award.status == "approved", Award.notice_ends_at <= now)
                             .order_by(Award.id)).all()
    posted = 0
    from ..database import write_transaction
    for award_id in ids:
        with write_transaction():
            award = db.session.get(Award, award_id, with_for_update=True)
            if award.status == "approved" and award.notice_ends_at <= now:
                post_award(award, actor=actor)
                audit("award.post", actor=actor, village_id=award.village_id, target=award,
                      detail={"points": award.points})
                posted += 1
    return posted
