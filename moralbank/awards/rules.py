"""The rule catalogue: rules of a village, their versions (an edit adds one), and the caps on how
often a household may earn a rule in a month, quarter or year.

When the village's ``rule_changes_need_meeting`` is on, a new item, a new version and a
retirement are drafts (``status: draft``, a row of their own) until a villagers' meeting adopts
them (``awards.meetings``); the version in force stays in force meanwhile. One draft per item at
a time."""
from __future__ import annotations

from datetime import date

from flask_babel import gettext as _
from sqlalchemy import func, select

from .. import periods
from ..audit.service import record as audit
from ..errors import Conflict, Invalid, range_words
from ..extensions import db
from ..i18n import N_
from ..ledger.models import Transfer
from ..people import access
from ..people.models import Area, Household
from .models import CAP_PERIODS, CATEGORIES, Award, AwardStatus, Rule, RuleStatus

#: the fields a new version copies from the one in force unless changed
RULE_FIELDS = ("category", "title", "points", "cap_count", "cap_period", "photo_required", "veto")


#: the largest number of points one rule may give or take
MAX_POINTS = 1000
#: the most awards a cap may allow in its period
MAX_CAP = 100


def _check_rule_fields(category: str, title: str, points, cap_count, cap_period, veto=False) -> str:
    """Refuse a rule the catalogue cannot hold, naming each field as the rule form labels it and
    saying what it accepts (the API shows the same words)."""
    if category not in CATEGORIES:
        labels = "、".join(_(label) for label in CATEGORIES.values())
        raise Invalid(_("「类别」请从这些里选：%(labels)s", labels=labels),
                      fields={"category": [_("请从这些里选：%(labels)s", labels=labels)]})
    title = (title or "").strip()
    if not title or len(title) > 64:
        raise Invalid(_("「名称」必填，最多 64 字"), fields={"title": [_("必填，最多 64 字")]})
    if isinstance(points, bool) or not isinstance(points, int) or points == 0 or abs(points) > MAX_POINTS:
        words = _("要填 %(low)s 到 %(high)s 之间、不为 0 的整数（扣分填负数）", low=-MAX_POINTS, high=MAX_POINTS)
        raise Invalid(_("「分值」%(words)s", words=words), fields={"points": [words]})
    if (category == "deduction") != (points < 0):
        words = _("扣分类填负数，其他类别填正数")
        raise Invalid(_("「分值」%(words)s", words=words), fields={"points": [words]})
    if (cap_count is None) != (cap_period is None) or (cap_period and cap_period not in CAP_PERIODS):
        words = _("「上限次数」和「上限周期」（每月、每季度、每年）要一起填，或者都不填")
        raise Invalid(words, fields={"cap": [words]})
    if cap_count is not None and (isinstance(cap_count, bool) or not isinstance(cap_count, int)
                                  or not 0 < cap_count <= MAX_CAP):
        words = range_words(1, MAX_CAP)
        raise Invalid(_("「上限次数」%(words)s", words=words), fields={"cap": [words]})
    if veto not in (True, False):
        raise Invalid(_("一票否决应为是或否"), fields={"veto": [_("是或否")]})
    if veto and points >= 0:
        raise Invalid(_("一票否决项只能是扣分项（分值为负数）"), code="veto_not_deduction",
                      fields={"veto": [_("只能用于扣分项")]})
    return title


def _draft_status(village: Area) -> dict:
    """A new row's status: a draft when the village's changes need a meeting, else in force."""
    if village.rule_changes_need_meeting:
        return {"status": RuleStatus.DRAFT, "active": False}
    return {"status": RuleStatus.IN_FORCE, "active": True}


def pending_draft(rule: Rule) -> Rule | None:
    """The draft waiting for a meeting for ``rule``'s item (new version or retirement), if any."""
    return db.session.scalar(select(Rule).where(Rule.family_id == rule.family_id, Rule.status == RuleStatus.DRAFT,
                                                Rule.id != rule.id))


def _refuse_second_draft(rule: Rule) -> None:
    if pending_draft(rule) is not None:
        raise Conflict(_("「%(title)s」已有一份草案等待村民会议表决", title=rule.title), code="draft_pending")


def draft_change(rule: Rule) -> str:
    """What a version changes: ``new`` (an item added), ``revision`` or ``retirement``."""
    if rule.retires:
        return "retirement"
    return "new" if rule.version == 1 else "revision"


def create_rule(village: Area, *, category: str, title: str, points: int, cap_count: int | None = None,
                cap_period: str | None = None, photo_required: bool = False, veto: bool = False,
                actor=None) -> Rule:
    """Add a catalogue item (version 1) to a village: a draft when changes need a meeting."""
    if actor is not None:
        access.require(access.is_committee(actor, village), _("只有村委会可以修改积分清单"))
    title = _check_rule_fields(category, title, points, cap_count, cap_period, veto)
    rule = Rule(village_id=village.id, category=category, title=title, points=points,
                cap_count=cap_count, cap_period=cap_period, photo_required=bool(photo_required), veto=veto,
                **_draft_status(village))
    db.session.add(rule)
    db.session.flush()
    rule.family_id = rule.id
    audit("rule.create", actor=actor, village_id=village.id, target=rule,
          detail={"title": rule.title, "points": points, "status": rule.status, "veto": veto})
    return rule


def revise_rule(rule: Rule, *, actor, **changes) -> Rule:
    """Edit a rule by adding a new version; awards already made keep their version's points."""
    village = db.session.get(Area, rule.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以修改积分清单"))
    # Two committee members editing at once: the second waits here, then finds the rule inactive.
    db.session.refresh(rule, with_for_update=True)
    if not rule.active:
        raise Conflict(_("这一项已停用或已有新版本"), code="rule_inactive")
    _refuse_second_draft(rule)
    fields = {name: getattr(rule, name) for name in RULE_FIELDS}
    fields.update({key: value for key, value in changes.items() if key in fields})
    fields["title"] = _check_rule_fields(fields["category"], fields["title"], fields["points"],
                                         fields["cap_count"], fields["cap_period"], fields["veto"])
    status = _draft_status(village)
    if status["active"]:
        rule.active, rule.status = False, RuleStatus.RETIRED
    revised = Rule(village_id=rule.village_id, family_id=rule.family_id, version=rule.version + 1, **status,
                   **fields)
    db.session.add(revised)
    db.session.flush()
    audit("rule.revise", actor=actor, village_id=rule.village_id, target=revised,
          detail={"previous_id": rule.id, "status": revised.status,
                  "changes": {k: v for k, v in changes.items() if k in fields}})
    return revised


def retire_rule(rule: Rule, *, actor) -> Rule:
    """Take a rule out of the catalogue (past awards keep it). When changes need a meeting, the
    retirement is a draft (a version of its own with ``retires``) and the rule stays in force;
    returns that draft, else the retired rule."""
    village = db.session.get(Area, rule.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以修改积分清单"))
    db.session.refresh(rule, with_for_update=True)
    if village.rule_changes_need_meeting:
        if not rule.active:
            raise Conflict(_("这一项已停用或已有新版本"), code="rule_inactive")
        _refuse_second_draft(rule)
        draft = Rule(village_id=rule.village_id, family_id=rule.family_id, version=rule.version + 1, retires=True,
                     status=RuleStatus.DRAFT, active=False, **{name: getattr(rule, name) for name in RULE_FIELDS})
        db.session.add(draft)
        db.session.flush()
        audit("rule.retire", actor=actor, village_id=rule.village_id, target=draft,
              detail={"title": rule.title, "status": draft.status, "previous_id": rule.id})
        return draft
    if rule.status == RuleStatus.DRAFT:
        raise Conflict(_("草案还没有生效，不能停用"), code="rule_inactive")
    rule.active, rule.status = False, RuleStatus.RETIRED
    audit("rule.retire", actor=actor, village_id=rule.village_id, target=rule, detail={"title": rule.title})
    return rule


def active_rules(village: Area) -> list[Rule]:
    """The catalogue in force (what may be awarded now)."""
    return db.session.scalars(select(Rule).where(Rule.village_id == village.id, Rule.active.is_(True))
                              .order_by(Rule.category, Rule.points.desc(), Rule.id)).all()


def draft_rules(village: Area) -> list[Rule]:
    """Drafts waiting for a villagers' meeting, oldest first."""
    return db.session.scalars(select(Rule).where(Rule.village_id == village.id, Rule.status == RuleStatus.DRAFT)
                              .order_by(Rule.id)).all()


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
                    Award.status != AwardStatus.REJECTED, Award.occurred_on >= start, Award.occurred_on < end))
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
