"""The award life cycle up to the decision: propose (one award or a sheet), approve, reject,
review a batch, object during notice; and the queues the committee and the board read.

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
from datetime import date, timedelta

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import labels, periods
from ..audit.service import record as audit
from ..database import require_write_transaction, utcnow, write_transaction
from ..errors import Conflict, DomainError, Forbidden, Invalid, NotFound, range_words
from ..extensions import db
from ..i18n import N_
from ..people import access, kinships
from ..people.models import Area, Household, User
from .models import Award, AwardStatus, Objection, Rule, RuleStatus
from .posting import post_award
from .rules import check_cap

MAX_QUANTITY = 50
#: how far back conduct may be dated when proposing
MAX_BACKDATE_DAYS = 366


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
    #: a photo already kept (``photos.keep_photo``; the inspection sheet's), instead of ``photo``
    photo_path: str | None = None


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
    require_write_transaction()
    household = db.session.get(Household, proposal.household_id)
    if household is None:
        raise NotFound(_("找不到这户"), fields={"household_id": [_("不存在")]})
    # Serialise proposals for one household (the cap count below) on PostgreSQL.
    db.session.execute(select(Household.id).where(Household.id == household.id).with_for_update())
    rule = db.session.get(Rule, proposal.rule_id)
    if rule is None or rule.village_id != household.village_id:
        raise NotFound(_("本村的积分清单里没有这一项"), fields={"rule_id": [_("不存在")]})
    kind = _authorise_proposal(actor, household, rule)
    if rule.status == RuleStatus.DRAFT:
        raise Invalid(_("「%(title)s」还是草案，村民会议通过后才能使用", title=rule.title), code="rule_not_in_force",
                      fields={"rule_id": [_("尚未生效")]})
    if kind == "proposal":
        kinships.require_no_conflict(actor, household.id, approving=False)
    if not rule.active:
        raise Invalid(_("「%(title)s」已停用或已修改，请刷新后重选", title=rule.title), code="rule_inactive",
                      fields={"rule_id": [_("已停用")]})
    quantity = proposal.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        words = range_words(1, MAX_QUANTITY)
        raise Invalid(_("「次数」%(words)s", words=words), fields={"quantity": [words]})
    today = periods.today()
    occurred_on = proposal.occurred_on or today
    if occurred_on > today:
        raise Invalid(_("日期不能晚于今天"), fields={"occurred_on": [_("不能是将来")]})
    if occurred_on < today - timedelta(days=MAX_BACKDATE_DAYS):
        raise Invalid(_("日期太早（最多一年前）"), fields={"occurred_on": [_("太早")]})
    note = (proposal.note or "").strip() or None
    if note and len(note) > 500:
        raise Invalid(_("说明最多 500 字"), fields={"note": [_("太长")]})
    if rule.photo_required and not (proposal.photo or proposal.photo_path):
        raise Invalid(_("「%(title)s」需要上传照片作为证据", title=rule.title), code="photo_required",
                      fields={"photo": [_("必须上传照片")]})
    check_cap(household, rule, occurred_on, quantity)
    photo_path = proposal.photo_path
    if proposal.photo and not photo_path:
        from .photos import store_photo
        photo_path = store_photo(proposal.photo, household.village_id)
    award = Award(village_id=household.village_id, household_id=household.id, rule_id=rule.id, quantity=quantity,
                  points=rule.points * quantity, status=AwardStatus.PROPOSED, note=note, occurred_on=occurred_on,
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
    rows: dict[str, list[DomainError]] = {}
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
                rows.setdefault(label, []).append(error)
        if problems:
            refused = Invalid(_("评分表有 %(n)s 行有问题，整张表没有提交", n=len(problems)), code="sheet_rejected",
                              fields=problems)
            refused.rows = rows  # each row's errors with their fields, for a page that shows them in place
            raise refused
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
    # Its rule comes in the same query (every answer shows it); only the award's row is locked.
    award = db.session.get(Award, award_id, with_for_update={"of": Award}, populate_existing=True,
                           options=[joinedload(Award.rule, innerjoin=True)])
    if award is None:
        raise NotFound(_("找不到这条积分记录"))
    return award


def approve(actor: User, award_id: int) -> Award:
    """Committee approval: into public notice, or posted at once when the village's notice is 0 days."""
    require_write_transaction()
    award = _lock_award(award_id)
    village = db.session.get(Area, award.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以审核"))
    if award.status not in (AwardStatus.PROPOSED, AwardStatus.DISPUTED):
        raise Conflict(_("这条记录已是「%(status)s」，不能再审核", status=status_label(award.status)),
                       code="invalid_state")
    if award.household_id in access.linked_household_ids(actor):
        raise Forbidden(_("不能审核自己家的积分"), code="own_household")
    kinships.require_no_conflict(actor, award.household_id, approving=True)
    if abs(award.points) > village.approval_threshold and award.proposed_by_id == actor.id:
        raise Forbidden(_("超过 %(n)s 分的记录需要由提交人以外的村委会成员审核", n=village.approval_threshold),
                        code="second_approver_required")
    now = utcnow()
    was_disputed = award.status == AwardStatus.DISPUTED
    award.status = AwardStatus.APPROVED
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
    require_write_transaction()
    award = _lock_award(award_id)
    village = db.session.get(Area, award.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以审核"))
    reason = (reason or "").strip()
    if not reason or len(reason) > 255:
        raise Invalid(_("请填写不通过的理由"), fields={"reason": [_("必填，最多 255 字")]})
    if award.status not in (AwardStatus.PROPOSED, AwardStatus.APPROVED, AwardStatus.DISPUTED):
        raise Conflict(_("这条记录已是「%(status)s」，不能再审核", status=status_label(award.status)),
                       code="invalid_state")
    award.status = AwardStatus.REJECTED
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
    require_write_transaction()
    award = _lock_award(award_id)
    village = db.session.get(Area, award.village_id)
    if not access.lives_in(actor, village):
        raise Forbidden(_("只有本村村民可以提出异议"))
    reason = (reason or "").strip()
    if not reason or len(reason) > 255:
        raise Invalid(_("请写明异议的理由"), fields={"reason": [_("必填，最多 255 字")]})
    if award.status == AwardStatus.DISPUTED:
        pass  # a second objection is recorded too
    elif award.status != AwardStatus.APPROVED or award.notice_ends_at is None or award.notice_ends_at <= utcnow():
        raise Conflict(_("这条记录不在公示期内，不能提出异议"), code="not_in_notice")
    already = db.session.scalar(select(Objection.id).where(Objection.award_id == award.id,
                                                           Objection.user_id == actor.id))
    if already is not None:
        raise Conflict(_("您已经对这条记录提出过异议"), code="already_objected")
    db.session.add(Objection(village_id=village.id, award_id=award.id, user_id=actor.id, reason=reason))
    award.status = AwardStatus.DISPUTED
    audit("award.object", actor=actor, village_id=village.id, target=award, detail={"reason": reason})
    return award


# --- reading ---------------------------------------------------------------------------------

STATUS_LABELS = labels.AWARD_STATUSES


def status_label(status: str) -> str:
    """An award's state in words (``labels.AWARD_STATUSES``)."""
    return labels.label(labels.AWARD_STATUSES, str(status))


def in_notice(village: Area) -> list[Award]:
    """Awards of a village in public notice now (approved, deadline ahead) or disputed."""
    now = utcnow()
    return db.session.scalars(
        select(Award).where(Award.village_id == village.id,
                            ((Award.status == AwardStatus.APPROVED) & (Award.notice_ends_at > now))
                            | (Award.status == AwardStatus.DISPUTED))
        .order_by(Award.notice_ends_at, Award.id)).all()


def review_queue(village: Area, viewer: User | None = None) -> list[Award]:
    """What the committee must decide: proposed and disputed awards, oldest first; for ``viewer``,
    without the awards to their declared relatives (other approvers decide those)."""
    query = select(Award).where(Award.village_id == village.id,
                                Award.status.in_((AwardStatus.PROPOSED, AwardStatus.DISPUTED)))
    kin = kinships.kin_household_ids(viewer)
    if kin:
        query = query.where(Award.household_id.notin_(kin))
    return db.session.scalars(query.order_by(Award.proposed_at, Award.id)).all()


def waiting_counts(village: Area) -> dict[str, int]:
    """What waits for the committee: awards proposed (to review), disputed (an objection came in),
    and approved ones whose notice ends today or tomorrow (local calendar days)."""
    from sqlalchemy import func
    now = utcnow()
    counts = dict(db.session.execute(select(Award.status, func.count()).where(
        Award.village_id == village.id, Award.status.in_((AwardStatus.PROPOSED, AwardStatus.DISPUTED)))
        .group_by(Award.status)).all())
    soon = periods.day_start(periods.today(now) + timedelta(days=2))
    ending = db.session.scalar(select(func.count()).select_from(Award).where(
        Award.village_id == village.id, Award.status == AwardStatus.APPROVED,
        Award.notice_ends_at > now, Award.notice_ends_at < soon)) or 0
    return {"proposed": counts.get(AwardStatus.PROPOSED, 0), "disputed": counts.get(AwardStatus.DISPUTED, 0),
            "ending": ending}
