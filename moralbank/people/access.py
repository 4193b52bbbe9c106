"""Who may see and do what, by role grants scoped to areas, stores and households.

A grant reaches the area it names and everything below it: a supervisor of a
town sees its villages, a committee member of a village its hamlets, a grid
manager only the hamlets granted.

This module is the only code that reads grants: the household of a resident, the
hamlets of a grid manager, the village of a committee member, the store of a
clerk, and who may read a household, a shop's shelf or a statement. Web pages,
the API and the services ask it rather than looking at ``user.grants``.
"""
from __future__ import annotations

from flask import g, has_request_context
from flask_babel import gettext as _
from functools import lru_cache

from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from ..errors import Forbidden, NotFound
from ..extensions import db
from .models import Area, Household, User

#: roles that see every hamlet of the villages they reach
VILLAGE_WIDE = ("committee", "admin", "supervisor")

#: the largest id a 4-byte INTEGER column holds: a larger one finds nothing (and must not reach PostgreSQL)
ID_MAX = 2**31 - 1


def _grants(user: User | None) -> list:
    return list(user.grants) if user is not None and getattr(user, "is_authenticated", True) else []


def _area_chain(area: Area) -> frozenset[int]:
    """The ids of ``area`` and the areas above it, walked once per request (kept in ``g``)."""
    cache = g.setdefault("area_chains", {}) if has_request_context() else {}
    chain = cache.get(area.id)
    if chain is None:
        chain = cache[area.id] = frozenset(node.id for node in area.ancestors())
    return chain


def grants_reaching(user: User | None, area: Area, roles: tuple[str, ...]) -> list:
    """The user's grants of ``roles`` that cover ``area`` (the area itself or an ancestor)."""
    if user is None:
        return []
    candidates = [grant for grant in _grants(user) if grant.role in roles]
    if not candidates:
        return []
    if all(grant.area_id == area.id or (grant.role == "admin" and grant.area_id is None) for grant in candidates):
        return candidates  # no need to walk up the areas
    chain = _area_chain(area)
    return [grant for grant in candidates
            if grant.area_id in chain or (grant.role == "admin" and grant.area_id is None)]


def is_committee(user: User | None, village: Area) -> bool:
    """Committee of the village (or an admin above it)."""
    return bool(grants_reaching(user, village, ("committee", "admin")))


def is_supervisor(user: User | None, village: Area) -> bool:
    """A supervisor of the village's town or county."""
    return bool(grants_reaching(user, village, ("supervisor",)))


def sees_whole_village(user: User | None, village: Area) -> bool:
    """Committee, admin or supervisor reaching the village: every hamlet of it, not just some."""
    return bool(grants_reaching(user, village, VILLAGE_WIDE))


def is_staff(user: User | None, village: Area) -> bool:
    """Committee, grid manager of one of its hamlets, supervisor above it, or admin."""
    return sees_whole_village(user, village) or bool(grid_hamlet_ids(user, village))


def grid_hamlet_ids(user: User | None, village: Area) -> set[int]:
    """The hamlets of ``village`` a grid manager works in."""
    return {grant.area_id for grant in _grants(user) if grant.role == "grid" and grant.village_id == village.id}


def hamlet_scope(user: User | None, village: Area) -> set[int] | None:
    """The hamlets of ``village`` the user reads: ``None`` for all of them (committee, admin,
    supervisor), else a grid manager's own hamlets (empty for anyone else)."""
    if sees_whole_village(user, village):
        return None
    return grid_hamlet_ids(user, village)


def resident_household_ids(user: User | None) -> set[int]:
    """The households the user is a resident of (by resident grant)."""
    return {grant.household_id for grant in _grants(user)
            if grant.role == "resident" and grant.household_id is not None}


def linked_household_ids(user: User | None) -> set[int]:
    """Households the user belongs to: by resident grant or as a registered member (a committee
    member's own family), for conflicts of interest."""
    ids = resident_household_ids(user)
    if user is not None and getattr(user, "resident", None) is not None:
        ids.add(user.resident.household_id)
    return ids


def own_household(user: User | None) -> Household | None:
    """The resident's household ("my household"); the first one if they hold several."""
    household_ids = resident_household_ids(user)
    return _household(min(household_ids)) if household_ids else None


@lru_cache(maxsize=1)
def _household_query():
    """Built once, so its cache key is computed once (a statement per call would need a new one)."""
    return (select(Household).options(joinedload(Household.village), joinedload(Household.members))
            .where(Household.id == bindparam("household_id")))


def _household(household_id: int) -> Household | None:
    """A household with its village and members, in one query (what reading it needs)."""
    loaded = db.session.identity_map.get(db.session.identity_key(Household, household_id))
    if loaded is not None and "members" in loaded.__dict__ and "village_id" in loaded.__dict__:
        return loaded
    return db.session.execute(_household_query(), {"household_id": household_id}).unique().scalar_one_or_none()


def lives_in(user: User | None, village: Area) -> bool:
    """A resident of one of the village's households."""
    return any(grant.role == "resident" and grant.village_id == village.id for grant in _grants(user))


def clerk_store_ids(user: User | None) -> set[int]:
    """The stores the user works at as a clerk."""
    return {grant.store_id for grant in _grants(user) if grant.role == "clerk" and grant.store_id is not None}


def clerk_store_id(user: User | None) -> int | None:
    """The store of a clerk (the first one granted), if any."""
    return next((grant.store_id for grant in _grants(user) if grant.role == "clerk" and grant.store_id), None)


def is_clerk_of(user: User | None, store) -> bool:
    return store.id in clerk_store_ids(user)


def home_village_id(user: User | None) -> int | None:
    """The village a user works or lives in (the first grant naming one): the village of their
    menu and of their entries in the audit log."""
    return next((grant.village_id for grant in _grants(user) if grant.village_id), None)


def first_village(user: User | None, roles: tuple[str, ...]) -> Area | None:
    """The first village of a grant of ``roles`` (the committee's, the grid manager's, the staff's)."""
    return next((grant.village for grant in _grants(user) if grant.role in roles and grant.village_id), None)


def committee_village(user: User | None) -> Area | None:
    """The village a committee member (or village admin) works for."""
    for grant in _grants(user):
        if grant.role in ("committee", "admin") and grant.village_id and is_committee(user, grant.village):
            return grant.village
    return None


def can_read_household(user: User | None, household: Household) -> bool:
    """Its own residents, the committee, supervisors and admins above its village, and the grid
    managers of its hamlet (not of the village's other hamlets)."""
    if household.id in resident_household_ids(user):
        return True
    village = db.session.get(Area, household.village_id)
    scope = hamlet_scope(user, village)
    return scope is None or household.hamlet_id in scope


def can_read_statement(user: User | None, store) -> bool:
    """A store's redemptions and statement: its clerk, the committee, supervisors above the village."""
    village = db.session.get(Area, store.village_id)
    return is_clerk_of(user, store) or is_committee(user, village) or is_supervisor(user, village)


def can_read_shelf(user: User | None, store) -> bool:
    """A store's items: users of its village (residents, staff, its clerks) and supervisors above."""
    village = db.session.get(Area, store.village_id)
    return (is_staff(user, village) or lives_in(user, village)
            or any(grant.role == "clerk" and grant.village_id == village.id for grant in _grants(user)))


def readable_household(user: User | None, household_id) -> Household:
    """The household, if the user may read it; not-found and not-yours look alike (no probing ids)."""
    if isinstance(household_id, bool) or not isinstance(household_id, int) or not 0 < household_id <= ID_MAX:
        raise NotFound(_("找不到这户"))
    household = _household(household_id)
    if household is None or not can_read_household(user, household):
        raise NotFound(_("找不到这户"))
    return household


def get_or_404(model, ident, message: str | None = None, **where):
    """The ``model`` row with id ``ident`` whose columns equal ``where`` (e.g. ``village_id=…``), or a
    404 :class:`NotFound` — an object of another village looks like none at all. Ids that are not
    positive integers within the id columns find nothing."""
    if isinstance(ident, bool) or not isinstance(ident, int) or not 0 < ident <= ID_MAX:
        raise NotFound(message or _("找不到"))
    row = db.session.get(model, ident)
    if row is None or any(getattr(row, key) != value for key, value in where.items()):
        raise NotFound(message or _("找不到"))
    return row


def require(condition: bool, message: str | None = None) -> None:
    if not condition:
        raise Forbidden(message or _("没有权限"))


def villages_visible(user: User) -> list[Area]:
    """Every village the user may read as staff."""
    from sqlalchemy import select

    villages = db.session.scalars(select(Area).where(Area.level == "village").order_by(Area.code)).all()
    return [village for village in villages if is_staff(user, village)]


def users_of_village(village: Area) -> list:
    """(id, name) of every user holding a grant in the village (the audit log's person filter)."""
    from sqlalchemy import select

    return db.session.execute(select(User.id, User.name).join(User.grants).where(
        User.grants.any(village_id=village.id)).distinct()).all()
