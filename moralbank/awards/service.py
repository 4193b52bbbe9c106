"""Verbs of the rule catalogue and the award life cycle (SPEC §4).

``proposed`` → ``approved`` (in public notice until ``notice_ends_at``) → ``posted``;
or ``rejected``; an objection during notice makes an award ``disputed`` until the
committee approves or rejects it again. Posting moves the points through the
ledger: issuance → household for a positive rule, household → the village's
deduction sink for a negative one, under the idempotency key ``award:<id>``, so
an award posts at most once even when two approvals race.

Each verb authorises, validates and acts inside one write transaction; the
caller (API resource, web view, CLI) only translates input and output.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from flask_babel import gettext as _
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm.attributes import set_committed_value

from .. import periods
from ..audit.service import record as audit
from ..database import UTCDateTime, in_write_transaction, require_write_transaction, utcnow, write_transaction
from ..errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from ..extensions import db
from ..i18n import N_
from ..ledger import service as ledger
from ..ledger.models import Transfer
from ..people import access
from ..people.models import Area, Household, User
from .models import CAP_PERIODS, CATEGORIES, Award, Objection, Rule

MAX_QUANTITY = 50
#: how far back conduct may be dated when proposing
MAX_BACKDATE_DAYS = 366


# --- the catalogue ---------------------------------------------------------------------------

def _check_rule_fields(category: str, title: str, points, cap_count, cap_period) -> str:
    if category not in CATEGORIES:
        raise Invalid(_("未知类别"), fields={"category": [", ".join(CATEGORIES)]})
    title = (title or "").strip()
    if not title or len(title) > 64:
        raise Invalid(_("请填写名称（最多 64 字）"), fields={"title": [_("必填")]})
    if isinstance(points, bool) or not isinstance(points, int) or points == 0 or abs(points) > 1000:
        raise Invalid(_("分值必须是非零整数"), fields={"points": [_("非零整数，绝对值不超过 1000")]})
    if (category == "deduction") != (points < 0):
        raise Invalid(_("扣分项的分值应为负数，其他类别为正数"), fields={"points": [_("正负号与类别不符")]})
    if (cap_count is None) != (cap_period is None) or (cap_period and cap_period not in CAP_PERIODS) \
            or (cap_count is not None and (isinstance(cap_count, bool) or not isinstance(cap_count, int)
                                           or not 0 < cap_count <= 100)):
        raise Invalid(_("上限需要次数和周期（月/季/年）"), fields={"cap": [_("次数和周期一起填")]})
    return title


def create_rule(village: Area, *, category: str, title: str, points: int, cap_count: int | None = None,
                cap_period: str | None = None, photo_required: bool = False, actor=None) -> Rule:
    """Add a catalogue item (version 1) to a village."""
    if actor is not None:
        access.require(access.is_committee(actor, village), _("只有村委会可以修改积分清单"))
    title = _check_rule_fields(category, title, points, cap_count, cap_period)
    rule = Rule(village_id=village.id, category=category, title=title, points=points,
                cap_count=cap_count, cap_period=cap_period, photo_required=bool(photo_required))
    db.session.add(rule)
    db.session.flush()
    rule.family_id = rule.id
    audit("rule.create", actor=actor, village_id=village.id, target=rule,
          detail={"title": rule.title, "points": points})
    return rule


def revise_rule(rule: Rule, *, actor, **changes) -> Rule:
    """Edit a rule by adding a new version; awards already made keep their version's points."""
    village = db.session.get(Area, rule.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以修改积分清单"))
    # Two committee members editing at once: the second waits here, then finds the rule inactive.
    db.session.refresh(rule, with_for_update=True)
    if not rule.active:
        raise Conflict(_("这一项已停用或已有新版本"), code="rule_inactive")
    fields = {name: getattr(rule, name) for name in ("category", "title", "points", "cap_count", "cap_period",
                                                     "photo_required")}
    fields.update({key: value for key, value in changes.items() if key in fields})
    fields["title"] = _check_rule_fields(fields["category"], fields["title"], fields["points"],
                                         fields["cap_count"], fields["cap_period"])
    rule.active = False
    revised = Rule(village_id=rule.village_id, family_id=rule.family_id, version=rule.version + 1, active=True,
                   **fields)
    db.session.add(revised)
    db.session.flush()
    audit("rule.revise", actor=actor, village_id=rule.village_id, target=revised,
          detail={"previous_id": rule.id, "changes": {k: v for k, v in changes.items() if k in fields}})
    return revised


def retire_rule(rule: Rule, *, actor) -> Rule:
    """Take a rule out of the catalogue (past awards keep it)."""
    village = db.session.get(Area, rule.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以修改积分清单"))
    rule.active = False
    audit("rule.retire", actor=actor, village_id=rule.village_id, target=rule, detail={"title": rule.title})
    return rule


def active_rules(village: Area) -> list[Rule]:
    return db.session.scalars(select(Rule).where(Rule.village_id == village.id, Rule.active.is_(True))
                              .order_by(Rule.category, Rule.points.desc(), Rule.id)).all()


# --- caps ------------------------------------------------------------------------------------

_PERIOD_WORDS = {"month": N_("本月"), "quarter": N_("本季度"), "year": N_("本年度")}


def check_cap(household: Household, rule: Rule, occurred_on: date, quantity: int, *,
              exclude_award_id: int | None = None) -> None:
    """Refuse when this award would exceed the rule's cap; say when the household may earn it again."""
    if rule.cap_count is None:
        return
    start, end = periods.days(periods.containing(rule.cap_period, occurred_on))
    query = (select(func.coalesce(func.sum(Award.quantity), 0))
             .join(Rule, Rule.id == Award.rule_id)
             .where(Award.household_id == household.id, Rule.family_id == rule.family_id,
                    Award.status != "rejected", Award.occurred_on >= start, Award.occurred_on < end))
    # An award whose posting was reversed no longer counts.
    reversed_awards = select(Transfer.award_id).where(Transfer.code == "reversal", Transfer.award_id.is_not(None),
                                                      Transfer.village_id == household.village_id)
    query = query.where(Award.id.not_in(reversed_awards))
    if exclude_award_id is not None:
        query = query.where(Award.id != exclude_award_id)
    used = db.session.scalar(query) or 0
    if used + quantity > rule.cap_count:
        raise Invalid(
            _("「%(title)s」%(period)s最多 %(cap)s 次，已有 %(used)s 次；%(next)s 起可以再记",
              title=rule.title, period=_(_PERIOD_WORDS[rule.cap_period]), cap=rule.cap_count, used=used,
              next=end.isoformat()),
            code="cap_exceeded", fields={"rule_id": [_("%(next)s 起可以再记", next=end.isoformat())]})


# --- proposing -------------------------------------------------------------------------------

@dataclass
class Proposal:
    """One award to propose: what the API, the propose form and each sheet row carry."""

    household_id: int
    rule_id: int
    quantity: int = 1
    note: str | None = None
    occurred_on: date | None = None
    photo: bytes | None = None


def _authorise_proposal(actor: User, household: Household, rule: Rule) -> str:
    """Who may propose for whom; returns ``proposal`` or ``declaration`` (a resident's own 申报)."""
    village = db.session.get(Area, household.village_id)
    if access.is_committee(actor, village):
        return "proposal"
    if household.hamlet_id in access.grid_hamlet_ids(actor, village):
        return "proposal"
    if household.id in access.resident_household_ids(actor):
        if rule.points < 0:
            raise Forbidden(_("村民只能为自己家申报加分项"))
        return "declaration"
    if access.grid_hamlet_ids(actor, village):
        raise Forbidden(_("这户不在您负责的屯/组"), code="outside_hamlets")
    raise Forbidden(_("您不能为这户申报积分"))


def propose(actor: User, proposal: Proposal, *, audit_action: str = "award.propose") -> Award:
    """Create a proposed award after checking who, which rule, cap and evidence."""
    assert in_write_transaction()
    household = db.session.get(Household, proposal.household_id)
    if household is None:
        raise NotFound(_("找不到这户"), fields={"household_id": [_("不存在")]})
    # Serialise proposals for one household (the cap count below) on PostgreSQL.
    db.session.execute(select(Household.id).where(Household.id == household.id).with_for_update())
    rule = db.session.get(Rule, proposal.rule_id)
    if rule is None or rule.village_id != household.village_id:
        raise NotFound(_("本村的积分清单里没有这一项"), fields={"rule_id": [_("不存在")]})
    kind = _authorise_proposal(actor, household, rule)
    if not rule.active:
        raise Invalid(_("「%(title)s」已停用或已修改，请刷新后重选", title=rule.title), code="rule_inactive",
                      fields={"rule_id": [_("已停用")]})
    quantity = proposal.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise Invalid(_("数量应为 1 到 %(n)s", n=MAX_QUANTITY), fields={"quantity": [_("超出范围")]})
    today = periods.today()
    occurred_on = proposal.occurred_on or today
    if occurred_on > today:
        raise Invalid(_("日期不能晚于今天"), fields={"occurred_on": [_("不能是将来")]})
    if occurred_on < today - timedelta(days=MAX_BACKDATE_DAYS):
        raise Invalid(_("日期太早（最多一年前）"), fields={"occurred_on": [_("太早")]})
    note = (proposal.note or "").strip() or None
    if note and len(note) > 500:
        raise Invalid(_("说明最多 500 字"), fields={"note": [_("太长")]})
    if rule.photo_required and not proposal.photo:
        raise Invalid(_("「%(title)s」需要上传照片作为证据", title=rule.title), code="photo_required",
                      fields={"photo": [_("必须上传照片")]})
    check_cap(household, rule, occurred_on, quantity)
    photo_path = None
    if proposal.photo:
        from .photos import store_photo
        photo_path = store_photo(proposal.photo, household.village_id)
    award = Award(village_id=household.village_id, household_id=household.id, rule_id=rule.id, quantity=quantity,
                  points=rule.points * quantity, status="proposed", note=note, occurred_on=occurred_on,
                  proposed_by_id=actor.id, proposed_at=utcnow(), photo_path=photo_path)
    db.session.add(award)
    db.session.flush()
    audit(audit_action if kind == "proposal" else "award.declare", actor=actor, village_id=award.village_id,
          target=award, detail={"household_id": household.id, "rule": rule.title, "points": award.points})
    return award


def propose_batch(actor: User, proposals: list[tuple[str, Proposal]]) -> list[Award]:
    """An inspection sheet: propose every row or none. ``proposals`` are (row label, proposal).

    All rows are checked; if any is bad, nothing is kept and the error names each bad row.
    """
    if not proposals:
        raise Invalid(_("评分表是空的：请至少给一户打分"), code="empty_sheet")
    problems: dict[str, list[str]] = {}
    awards: list[Award] = []
    with write_transaction():
        for label, proposal in proposals:
            savepoint = db.session.begin_nested()
            try:
                awards.append(propose(actor, proposal, audit_action="award.propose_sheet"))
                savepoint.commit()
            except (Invalid, Forbidden, NotFound) as error:
                savepoint.rollback()
                problems.setdefault(label, []).append(error.message)
        if problems:
            raise Invalid(_("评分表有 %(n)s 行有问题，整张表没有提交", n=len(problems)), code="sheet_rejected",
                          fields=problems)
    return awards


# --- deciding --------------------------------------------------------------------------------

def readable_award(user: User | None, award_id) -> Award:
    """The award, if ``user`` may read its household (web page, photo and API alike); not-found
    and not-yours look alike, so ids cannot be probed."""
    award = access.get_or_404(Award, award_id, _("找不到这条积分记录"))
    if not access.can_read_household(user, db.session.get(Household, award.household_id)):
        raise NotFound(_("找不到这条积分记录"))
    return award


def _lock_award(award_id: int) -> Award:
    award = db.session.get(Award, award_id, with_for_update=True, populate_existing=True)
    if award is None:
        raise NotFound(_("找不到这条积分记录"))
    return award


def approve(actor: User, award_id: int) -> Award:
    """Committee approval: into public notice, or posted at once when the village's notice is 0 days."""
    assert in_write_transaction()
    award = _lock_award(award_id)
    village = db.session.get(Area, award.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以审核"))
    if award.status not in ("proposed", "disputed"):
        raise Conflict(_("这条记录已是「%(status)s」，不能再审核", status=status_label(award.status)),
                       code="invalid_state")
    if award.household_id in access.linked_household_ids(actor):
        raise Forbidden(_("不能审核自己家的积分"), code="own_household")
    if abs(award.points) > village.approval_threshold and award.proposed_by_id == actor.id:
        raise Forbidden(_("超过 %(n)s 分的记录需要由提交人以外的村委会成员审核", n=village.approval_threshold),
                        code="second_approver_required")
    now = utcnow()
    was_disputed = award.status == "disputed"
    award.status = "approved"
    award.decided_by_id = actor.id
    award.decided_at = now
    if not was_disputed or award.notice_ends_at is None:
        award.notice_ends_at = now + timedelta(days=village.notice_days)
    audit("award.approve", actor=actor, village_id=village.id, target=award,
          detail={"points": award.points, "after_dispute": was_disputed})
    if award.notice_ends_at <= now:
        post_award(award, actor=actor)
        audit("award.post", actor=actor, village_id=village.id, target=award, detail={"points": award.points})
    return award


def reject(actor: User, award_id: int, reason: str) -> Award:
    """Committee rejection, with a reason the proposer and household will see."""
    assert in_write_transaction()
    award = _lock_award(award_id)
    village = db.session.get(Area, award.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以审核"))
    reason = (reason or "").strip()
    if not reason or len(reason) > 255:
        raise Invalid(_("请填写不通过的理由"), fields={"reason": [_("必填，最多 255 字")]})
    if award.status not in ("proposed", "approved", "disputed"):
        raise Conflict(_("这条记录已是「%(status)s」，不能再审核", status=status_label(award.status)),
                       code="invalid_state")
    award.status = "rejected"
    award.decided_by_id = actor.id
    award.decided_at = utcnow()
    award.decision_reason = reason
    audit("award.reject", actor=actor, village_id=village.id, target=award, detail={"reason": reason})
    return award


@dataclass
class ReviewOutcome:
    """What a batch review did: the awards decided, and each refused one with its reason."""
    decided: list[int]
    refused: list[tuple[int, DomainError]]


def review_batch(actor: User, award_ids: list[int], decision: str, reason: str = "") -> ReviewOutcome:
    """Approve or reject several awards at once (the committee's review queue).

    Each award is decided in its own savepoint inside the caller's transaction: one that is
    refused (decided already, own household, second approver needed…) is rolled back alone and
    reported, the others stand.
    """
    require_write_transaction()
    if decision not in ("approve", "reject"):
        raise Invalid(_("请选择通过或不通过"), fields={"decision": [_("应为通过或不通过")]})
    if not award_ids:
        raise Invalid(_("请先勾选要处理的记录"), fields={"award_ids": [_("至少选一条")]})
    village_ids = db.session.scalars(select(Award.village_id).where(Award.id.in_(award_ids)).distinct())
    for village_id in village_ids:  # one who reviews none of these villages is refused whole
        access.require(access.is_committee(actor, db.session.get(Area, village_id)), _("只有村委会可以审核"))
    outcome = ReviewOutcome([], [])
    for award_id in dict.fromkeys(award_ids):
        savepoint = db.session.begin_nested()
        try:
            if decision == "approve":
                approve(actor, award_id)
            else:
                reject(actor, award_id, reason)
            savepoint.commit()
            outcome.decided.append(award_id)
        except DomainError as error:
            savepoint.rollback()
            outcome.refused.append((award_id, error))
    return outcome


def object_to(actor: User, award_id: int, reason: str) -> Award:
    """A resident of the village objects during public notice: the award waits for the committee."""
    assert in_write_transaction()
    award = _lock_award(award_id)
    village = db.session.get(Area, award.village_id)
    if not access.lives_in(actor, village):
        raise Forbidden(_("只有本村村民可以提出异议"))
    reason = (reason or "").strip()
    if not reason or len(reason) > 255:
        raise Invalid(_("请写明异议的理由"), fields={"reason": [_("必填，最多 255 字")]})
    if award.status == "disputed":
        pass  # a second objection is recorded too
    elif award.status != "approved" or award.notice_ends_at is None or award.notice_ends_at <= utcnow():
        raise Conflict(_("这条记录不在公示期内，不能提出异议"), code="not_in_notice")
    already = db.session.scalar(select(Objection.id).where(Objection.award_id == award.id,
                                                           Objection.user_id == actor.id))
    if already is not None:
        raise Conflict(_("您已经对这条记录提出过异议"), code="already_objected")
    db.session.add(Objection(village_id=village.id, award_id=award.id, user_id=actor.id, reason=reason))
    award.status = "disputed"
    audit("award.object", actor=actor, village_id=village.id, target=award, detail={"reason": reason})
    return award


# --- posting ---------------------------------------------------------------------------------

def post_award(award: Award, *, actor=None, at: datetime | None = None) -> Award:
    """Move an approved award's points through the ledger and mark it posted (idempotent).
    The caller holds the award (``_lock_award``) and may have just approved it in memory."""
    assert in_write_transaction()
    if award.status == "posted":
        return award
    if award.status != "approved":
        raise Invalid(_("只有已通过的记录才能入账"), code="not_postable")
    if award in db.session.dirty:
        db.session.flush()  # the approval made a moment ago, so the claim below sees it
    if post_award_id(award.id, actor=actor, at=at) is None:
        # Another transaction moved it first (a caller that did not lock the award): posted is fine.
        db.session.refresh(award)
        if award.status != "posted":
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
            "claim": update(awards).where(awards.c.id == bindparam("award_id"), awards.c.status == "approved",
                                          awards.c.notice_ends_at <= bindparam("due", type_=UTCDateTime()))
            .values(status="posted", posted_at=bindparam("at", type_=UTCDateTime()))
            .returning(awards.c.village_id, awards.c.household_id, awards.c.points, awards.c.quantity,
                       select(rules.c.title).where(rules.c.id == awards.c.rule_id).scalar_subquery()),
        }
    return _POSTING[dialect]


def post_award_id(award_id: int, *, actor=None, at: datetime | None = None,
                  due: datetime | None = None) -> tuple[int, int] | None:
    """Post one approved award whose notice has ended (by ``due``, default always): claim it with a
    conditional UPDATE, move its points through the ledger. Core statements only, nothing for the ORM
    to flush. Returns (village id, points), or None when the award was not (or no longer) waiting."""
    assert in_write_transaction()
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
        set_committed_value(cached, "status", "posted")
        set_committed_value(cached, "posted_at", when)
    return village_id, points


#: "due" for a caller that has already decided the award is due
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=timezone.utc)


def record_award(household: Household, rule: Rule, *, proposer=None, approver=None, quantity: int = 1,
                 occurred_on: date | None = None, note: str | None = None, at: datetime | None = None) -> Award:
    """Create an award already decided and post it (the demo history and imports of paper records)."""
    when = at or utcnow()
    award = Award(village_id=household.village_id, household_id=household.id, rule_id=rule.id,
                  quantity=quantity, points=rule.points * quantity, status="approved", note=note,
                  occurred_on=occurred_on or periods.today(when), proposed_by_id=getattr(proposer, "id", None),
                  proposed_at=when - timedelta(hours=2), decided_by_id=getattr(approver, "id", None),
                  decided_at=when, notice_ends_at=when)
    db.session.add(award)
    db.session.flush()
    return post_award(award, actor=approver, at=when)


def post_due(now: datetime | None = None, *, actor=None) -> int:
    """Post every approved award whose notice has ended, one transaction each. Returns how many."""
    now = now or utcnow()
    ids = db.session.scalars(select(Award.id).where(Award.status == "approved", Award.notice_ends_at <= now)
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


# --- reversal --------------------------------------------------------------------------------

def reverse_transfer(actor: User, transfer_id: int, reason: str, *, idempotency_key: str) -> Transfer:
    """Committee correction of a posted transfer by its opposite; a transfer is reversed once (409).

    A retry under the same key replays the reversal, even once the month has been settled since.
    """
    assert in_write_transaction()
    original = db.session.get(Transfer, transfer_id)
    if original is None:
        raise NotFound(_("找不到这笔积分"))
    village = db.session.get(Area, original.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以冲正"))
    posted = ledger.reverse(original, actor=actor, reason=reason, idempotency_key=idempotency_key,
                            prepare=_check_reversible)
    if not posted.replayed:
        audit("ledger.reverse", actor=actor, village_id=village.id, target=original,
              detail={"reason": reason, "amount": original.amount, "reversal_id": posted.transfer.id})
    return posted.transfer


def _check_reversible(original: Transfer) -> None:
    """Settlements are money already paid: they are not reversed. A redemption is the store's to
    undo (``prepare_reversal``): not once its month is settled, and its goods go back on the shelf."""
    from ..stores.settled import prepare_reversal

    if original.code == "settlement":
        raise Conflict(_("结算记录不能冲正"), code="not_reversible")
    if original.code == "redemption":
        prepare_reversal(original)


# --- reading ---------------------------------------------------------------------------------

STATUS_LABELS = {"proposed": N_("待审核"), "approved": N_("公示中"), "disputed": N_("有异议"),
                 "posted": N_("已入账"), "rejected": N_("未通过")}


def status_label(status: str) -> str:
    return _(STATUS_LABELS.get(status, status))


def in_notice(village: Area) -> list[Award]:
    """Awards of a village in public notice now (approved, deadline ahead) or disputed."""
    now = utcnow()
    return db.session.scalars(
        select(Award).where(Award.village_id == village.id,
                            ((Award.status == "approved") & (Award.notice_ends_at > now))
                            | (Award.status == "disputed"))
        .order_by(Award.notice_ends_at, Award.id)).all()


def review_queue(village: Area) -> list[Award]:
    """What the committee must decide: proposed and disputed awards, oldest first."""
    return db.session.scalars(select(Award).where(Award.village_id == village.id,
                                                  Award.status.in_(("proposed", "disputed")))
                              .order_by(Award.proposed_at, Award.id)).all()


def award_transfer(award: Award) -> Transfer | None:
    """The transfer that posted the award (None until posted)."""
    return db.session.scalar(select(Transfer).where(Transfer.award_id == award.id,
                                                    Transfer.code.in_(("award", "deduction"))))


def is_reversed(transfer: Transfer | None) -> bool:
    if transfer is None:
        return False
    return db.session.scalar(select(Transfer.id).where(Transfer.reverses_id == transfer.id)) is not None
