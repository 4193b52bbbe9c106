"""Kinships (人情分): the households a staff member is related to, declared so that nobody proposes
for, or approves, an award to their own relatives.

A staff member (committee, grid manager) declares their own relatives' households; a committee
member may record one for any staff member of the village. A declaration is kept for good (it
is what the integrity page compares the awards before it with), and audited.
"""
from __future__ import annotations

from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..audit.service import record as audit
from ..database import UTCDateTime, require_write_transaction, utcnow
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..extensions import db
from . import access
from .models import Area, Household, User

#: the relations the declaration page suggests (any short text is accepted)
RELATIONS = ("父母", "子女", "兄弟姐妹", "配偶的家", "叔伯姑舅", "堂表亲", "其他亲属")
RELATION_LENGTH = 16


class Kinship(db.Model):
    """A staff member is related to a household: they may not propose or approve its awards."""

    __tablename__ = "kinships"
    __table_args__ = (UniqueConstraint("user_id", "household_id", name="uq_kinships_user_household"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the village (tenant) of the household
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    #: the staff member who is related
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: the household they are related to
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    #: how: 父母, 子女, 兄弟姐妹, … (free text, short)
    relation: Mapped[str] = mapped_column(String(RELATION_LENGTH))
    #: who recorded it: the staff member, or a committee member for them
    declared_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    household: Mapped[Household] = relationship()
    declared_by: Mapped[User] = relationship(foreign_keys=[declared_by_id])


class ConflictOfInterest(Forbidden):
    code = "conflict_of_interest"


def _works_in(user: User, village: Area) -> bool:
    """A committee member or grid manager of the village (who proposes or approves there)."""
    return access.is_committee(user, village) or bool(access.grid_hamlet_ids(user, village))


def declare(actor: User, village: Area, *, user_id, household_id, relation) -> Kinship:
    """Record that ``user_id`` is related to ``household_id``: staff for themselves, the committee
    for any staff member of the village. A second declaration of the same pair is a conflict."""
    require_write_transaction()
    fields: dict[str, list[str]] = {}
    for name, value in (("user_id", user_id), ("household_id", household_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            fields[name] = [_("必填")]
    relation = relation.strip() if isinstance(relation, str) else ""
    if not relation or len(relation) > RELATION_LENGTH:
        fields["relation"] = [_("请填写关系（最多 %(n)s 字）", n=RELATION_LENGTH)]
    if fields:
        raise Invalid(_("亲属申报有误，请按提示修改"), fields=fields)
    committee = access.is_committee(actor, village)
    if user_id != actor.id and not committee:
        raise Forbidden(_("只能申报自己的亲属；为他人登记需村委会"))
    if not committee and not _works_in(actor, village):
        raise Forbidden(_("只有本村工作人员申报亲属"))
    user = db.session.get(User, user_id) if 0 < user_id <= access.ID_MAX else None
    if user is None or not _works_in(user, village):
        raise NotFound(_("本村工作人员中没有这个人"), fields={"user_id": [_("不存在")]})
    household = db.session.get(Household, household_id) if 0 < household_id <= access.ID_MAX else None
    if household is None or household.village_id != village.id:
        raise NotFound(_("本村没有这户"), fields={"household_id": [_("不存在")]})
    if db.session.scalar(select(Kinship.id).where(Kinship.user_id == user.id,
                                                  Kinship.household_id == household.id)) is not None:
        raise Conflict(_("这户已经登记过"), code="already_declared")
    kinship = Kinship(village_id=village.id, user_id=user.id, household_id=household.id, relation=relation,
                      declared_by_id=actor.id, created_at=utcnow())
    db.session.add(kinship)
    db.session.flush()
    audit("kinship.declare", actor=actor, village_id=village.id, target=kinship,
          detail={"user_id": user.id, "household_id": household.id, "relation": relation})
    return kinship


def kinships_of(village: Area, *, user: User | None = None) -> list[Kinship]:
    """The village's declarations, newest first; only ``user``'s when given."""
    query = select(Kinship).where(Kinship.village_id == village.id)
    if user is not None:
        query = query.where(Kinship.user_id == user.id)
    return db.session.scalars(query.order_by(Kinship.created_at.desc(), Kinship.id.desc())).all()


def kin_household_ids(user: User | None) -> set[int]:
    """The households ``user`` declared (or had recorded) as relatives."""
    if user is None or not getattr(user, "id", None):
        return set()
    if "kin" in getattr(user, "__dict__", {}):  # loaded with the login (people.auth)
        return {kinship.household_id for kinship in user.kin}
    return set(db.session.scalars(select(Kinship.household_id).where(Kinship.user_id == user.id)))


def require_no_conflict(user: User, household_id: int, *, approving: bool) -> None:
    """Refuse (403 ``conflict_of_interest``) an award to a household ``user`` is related to."""
    if household_id in kin_household_ids(user):
        raise ConflictOfInterest(_("这户是您登记的亲属，不能由您审核，请其他村干部处理") if approving
                                 else _("这户是您登记的亲属，不能由您提交积分，请其他工作人员处理"))
