"""Who may see and do what, by role grants scoped to areas, stores and households.

A grant reaches the area it names and everything below it: a supervisor of a
town sees its villages, a committee member of a village its hamlets, a grid
manager only the hamlets granted.
"""
from __future__ import annotations

from flask_babel import gettext as _

from ..errors import Forbidden
from ..extensions import db
from .models import Area, Household, User


def _area_chain(area: Area) -> set[int]:
    return {node.id for node in area.ancestors()}


def grants_reaching(user: User | None, area: Area, roles: tuple[str, ...]) -> list:
    """The user's grants of ``roles`` that cover ``area`` (the area itself or an ancestor)."""
    if user is None:
        return []
    chain = _area_chain(area)
    return [grant for grant in user.grants
            if grant.role in roles and (grant.area_id in chain or (grant.role == "admin" and grant.area_id is None))]


def is_committee(user: User | None, village: Area) -> bool:
    """Committee of the village (or an admin above it)."""
    return bool(grants_reaching(user, village, ("committee", "admin")))


def is_staff(user: User | None, village: Area) -> bool:
    """Committee, grid manager of one of its hamlets, supervisor above it, or admin."""
    if grants_reaching(user, village, ("committee", "admin", "supervisor")):
        return True
    return any(grant.role == "grid" and grant.village_id == village.id for grant in (user.grants if user else []))


def grid_hamlet_ids(user: User | None, village: Area) -> set[int]:
    """The hamlets of ``village`` a grid manager works in."""
    return {grant.area_id for grant in (user.grants if user else [])
            if grant.role == "grid" and grant.village_id == village.id}


def resident_household_ids(user: User | None) -> set[int]:
    return {grant.household_id for grant in (user.grants if user else [])
            if grant.role == "resident" and grant.household_id is not None}


def can_read_household(user: User | None, household: Household) -> bool:
    """Staff of its village, or its own members."""
    village = db.session.get(Area, household.village_id)
    return household.id in resident_household_ids(user) or is_staff(user, village)


def require(condition: bool, message: str | None = None) -> None:
    if not condition:
        raise Forbidden(message or _("没有权限"))


def home_village(user: User) -> Area | None:
    """The village a user works in or lives in (the first one, for multi-village staff)."""
    for grant in user.grants:
        if grant.village_id is not None:
            return db.session.get(Area, grant.village_id)
    return None


def villages_visible(user: User) -> list[Area]:
    """Every village the user may read as staff."""
    from sqlalchemy import select

    villages = db.session.scalars(select(Area).where(Area.level == "village").order_by(Area.code)).all()
    return [village for village in villages if is_staff(user, village)]
