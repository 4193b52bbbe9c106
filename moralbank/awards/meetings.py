"""Villagers' meetings (村民会议 / 村民代表会议) that adopt the catalogue's drafts (四议两公开).

A draft (a new item, a new version, a retirement: see ``rules``) comes into force only when a
meeting adopts it, and a meeting adopts only with a quorum (more than half of those entitled
present) and a majority of those present in favour; otherwise nothing is recorded and the
committee hears why (422 ``no_quorum`` / ``not_adopted``). A meeting is recorded once and never
edited; each draft it adopted points to it, so the board can say which meeting put each item in
force.
"""
from __future__ import annotations

from datetime import date

from flask_babel import gettext as _
from sqlalchemy import select

from .. import periods
from ..audit.service import record as audit
from ..database import require_write_transaction
from ..errors import Conflict, Invalid
from ..extensions import db
from ..people import access
from ..people.models import Area, User
from .models import MEETING_KINDS, Meeting, Rule, RuleStatus
from .rules import draft_change

#: the most households or representatives a meeting can count (far above any village)
MAX_ENTITLED = 100_000
#: the most drafts one meeting adopts
MAX_ADOPTS = 200


def _count(value, field: str, problems: dict, high: int = MAX_ENTITLED) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        problems[field] = [_("应为 0 到 %(high)s 的整数", high=high)]
        return 0
    return value


def _check(held_on, kind, entitled, present, votes_for, votes_against, votes_abstain, adopts) -> None:
    """Every problem of the figures at once, each named by its field (422 ``invalid``)."""
    problems: dict[str, list[str]] = {}
    if not isinstance(held_on, date):
        problems["held_on"] = [_("日期格式应为 2026-03-12")]
    elif held_on > periods.today():
        problems["held_on"] = [_("不能晚于今天")]
    elif held_on.year < 2000:
        problems["held_on"] = [_("日期太早")]
    if kind not in MEETING_KINDS:
        problems["kind"] = [_("应为村民会议或村民代表会议")]
    entitled = _count(entitled, "entitled", problems)
    present = _count(present, "present", problems)
    votes = [_count(value, field, problems) for value, field in
             ((votes_for, "votes_for"), (votes_against, "votes_against"), (votes_abstain, "votes_abstain"))]
    if "entitled" not in problems and entitled < 1:
        problems["entitled"] = [_("应到人数至少为 1")]
    if not problems.keys() & {"entitled", "present"} and present > entitled:
        problems["present"] = [_("实到人数（%(present)s）不能多于应到人数（%(entitled)s）",
                                 present=present, entitled=entitled)]
    if not problems.keys() & {"present", "votes_for", "votes_against", "votes_abstain"} and sum(votes) > present:
        problems["votes_for"] = [_("赞成、反对、弃权合计 %(sum)s 票，不能多于实到人数 %(present)s",
                                   sum=sum(votes), present=present)]
    if not isinstance(adopts, list) or not adopts or len(adopts) > MAX_ADOPTS or not all(
            isinstance(rule_id, int) and not isinstance(rule_id, bool) for rule_id in adopts):
        problems["adopts"] = [_("请至少选择一项草案")]
    elif len(set(adopts)) != len(adopts):
        problems["adopts"] = [_("同一项草案选了两次")]
    if problems:
        raise Invalid(_("会议记录有误，请按提示修改"), fields=problems)


def record_meeting(actor: User, village: Area, *, held_on, kind, entitled, present, votes_for, votes_against,
                   votes_abstain, adopts, minutes: bytes | None = None) -> Meeting:
    """Record a meeting that adopts drafts of the catalogue (committee), in the caller's write
    transaction: the drafts come into force (a new version replaces the one in force, a retirement
    retires it). All or nothing."""
    require_write_transaction()
    access.require(access.is_committee(actor, village), _("只有村委会可以记录村民会议"))
    _check(held_on, kind, entitled, present, votes_for, votes_against, votes_abstain, adopts)
    if present * 2 <= entitled:
        raise Invalid(_("到会 %(present)s 人，未超过应到 %(entitled)s 人的一半，会议不足法定人数，不能通过",
                        present=present, entitled=entitled), code="no_quorum",
                      fields={"present": [_("需超过应到人数的一半")]})
    if votes_for * 2 <= present:
        raise Invalid(_("赞成 %(votes)s 票，未超过到会 %(present)s 人的半数，草案未获通过",
                        votes=votes_for, present=present), code="not_adopted",
                      fields={"votes_for": [_("需超过到会人数的一半")]})
    drafts = []
    for rule_id in adopts:
        draft = db.session.get(Rule, rule_id, with_for_update=True, populate_existing=True)
        if draft is None or draft.village_id != village.id or draft.status != RuleStatus.DRAFT:
            raise Invalid(_("第 %(id)s 项不是本村等待表决的草案", id=rule_id), code="not_a_draft",
                          fields={"adopts": [_("第 %(id)s 项不是草案", id=rule_id)]})
        drafts.append(draft)
    minutes_path = None
    if minutes:
        from .minutes import store_minutes
        minutes_path = store_minutes(minutes, village.id)
    meeting = Meeting(village_id=village.id, held_on=held_on, kind=kind, entitled=entitled, present=present,
                      votes_for=votes_for, votes_against=votes_against, votes_abstain=votes_abstain,
                      minutes_path=minutes_path, recorded_by_id=actor.id)
    db.session.add(meeting)
    db.session.flush()
    for draft in drafts:
        _adopt(draft, meeting)
    audit("meeting.record", actor=actor, village_id=village.id, target=meeting,
          detail={"held_on": held_on.isoformat(), "kind": kind, "entitled": entitled, "present": present,
                  "votes_for": votes_for, "votes_against": votes_against, "votes_abstain": votes_abstain,
                  "adopted": [draft.id for draft in drafts]})
    for draft in drafts:
        audit("rule.adopt", actor=actor, village_id=village.id, target=draft,
              detail={"meeting_id": meeting.id, "title": draft.title, "change": draft_change(draft)})
    return meeting


def _adopt(draft: Rule, meeting: Meeting) -> None:
    """Bring one draft into force; the version in force (for a new version or a retirement) retires."""
    if draft.version > 1 or draft.retires:
        current = db.session.scalar(select(Rule).where(Rule.family_id == draft.family_id, Rule.active.is_(True))
                                    .with_for_update())
        if current is None or current.version != draft.version - 1:
            raise Conflict(_("「%(title)s」在草案之后已被修改或停用，请重新起草", title=draft.title),
                           code="draft_stale", fields={"adopts": [str(draft.id)]})
        current.active, current.status = False, RuleStatus.RETIRED
        db.session.flush()
    if draft.retires:
        draft.status = RuleStatus.RETIRED
    else:
        draft.status, draft.active = RuleStatus.IN_FORCE, True
    draft.adopted_by_id = meeting.id


def meetings_of(village: Area, limit: int = 100) -> list[Meeting]:
    """The village's meetings, newest first."""
    return db.session.scalars(select(Meeting).where(Meeting.village_id == village.id)
                              .order_by(Meeting.held_on.desc(), Meeting.id.desc()).limit(limit)).all()


def adopted_by(meeting: Meeting) -> list[Rule]:
    """The drafts a meeting adopted."""
    return db.session.scalars(select(Rule).where(Rule.adopted_by_id == meeting.id).order_by(Rule.id)).all()


def meeting_line(meeting: Meeting) -> str:
    """How the board names a meeting: 2026-03-12 村民代表会议 41 票赞成 2 票反对."""
    return _("%(date)s %(kind)s %(yes)s 票赞成 %(no)s 票反对", date=meeting.held_on.isoformat(),
             kind=_(meeting.kind_label), yes=meeting.votes_for, no=meeting.votes_against)


def catalogue_in_force(village: Area) -> list[tuple[Rule, Meeting | None]]:
    """The catalogue in force, each item with the meeting that adopted its version (or None)."""
    rules = db.session.execute(select(Rule, Meeting).outerjoin(Meeting, Meeting.id == Rule.adopted_by_id)
                               .where(Rule.village_id == village.id, Rule.active.is_(True))
                               .order_by(Rule.category, Rule.points.desc(), Rule.id)).all()
    return [(rule, meeting) for rule, meeting in rules]
