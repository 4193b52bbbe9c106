"""Verbs for places, households, residents and users."""
from __future__ import annotations

import re

from flask_babel import gettext as _
from sqlalchemy import select

from ..audit.service import record as audit
from ..errors import Conflict, Invalid, NotFound
from ..extensions import db
from ..ledger import service as ledger
from .auth import hash_password, normalize_phone
from .passwords import password_problem
from .models import ROLES, Area, Household, Resident, RoleGrant, User

PHONE_RE = re.compile(r"1[0-9]{10}")  # used with fullmatch


def village_by_code(code: str) -> Area:
    """The village with this code, or NotFound."""
    village = db.session.scalar(select(Area).where(Area.code == (code or "").strip().upper(), Area.level == "village"))
    if village is None:
        raise NotFound(_("没有代码为 %(code)s 的村", code=code))
    return village


def create_area(*, level: str, code: str, name: str, parent: Area | None = None, **settings) -> Area:
    """Add an area; a village also gets its issuance account and deduction sink."""
    expected_parent = {"county": None, "town": "county", "village": "town", "hamlet": "village"}[level]
    if (parent.level if parent else None) != expected_parent:
        raise Invalid(f"a {level} must sit under a {expected_parent}")
    area = Area(level=level, code=code, name=name, parent=parent, **settings)
    db.session.add(area)
    db.session.flush()
    if level == "village":
        ledger.open_village_accounts(area)
    return area


def mask_id_number(id_number: str | None) -> str | None:
    """Keep the first 4 and last 4 characters of an ID number: 2203**********1234."""
    if not id_number:
        return None
    value = id_number.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]|\d{15}", value):
        raise Invalid(_("身份证号格式不对"), fields={"id_number": [_("应为 18 位")]})
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_name(name: str | None) -> str:
    """张*华 for public pages: first and last character kept."""
    if not name:
        return ""
    if len(name) == 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def create_household(*, village: Area, hamlet: Area, number: str, head_name: str, head_phone: str | None = None,
                     id_number: str | None = None, members: list[tuple[str, str]] = (),
                     address: str | None = None) -> Household:
    """Register a household with its head and members, and open its account."""
    if hamlet.parent_id != village.id:
        raise Invalid(_("屯/组不属于这个村"))
    household = Household(village_id=village.id, hamlet_id=hamlet.id, number=number, address=address)
    db.session.add(household)
    db.session.flush()
    head = Resident(village_id=village.id, household_id=household.id, name=head_name,
                    phone=normalize_phone(head_phone) or None, id_number_masked=mask_id_number(id_number),
                    relation="户主", is_head=True)
    db.session.add(head)
    for name, relation in members:
        db.session.add(Resident(village_id=village.id, household_id=household.id, name=name,
                                relation=relation or "家庭成员", is_head=False))
    ledger.open_household_account(household)
    return household


def _grant_scope(role: str, village: Area | None, household: Household | None, store) -> dict:
    """Where a role applies, from the CLI's --village/--household/--store."""
    if role == "resident":
        if household is None:
            raise Invalid(_("村民账号需要指定户 (--household)"))
        return {"area_id": household.village_id, "household_id": household.id, "village_id": household.village_id}
    if role == "clerk":
        if store is None:
            raise Invalid(_("店员账号需要指定商店 (--store)"))
        return {"area_id": store.village_id, "store_id": store.id, "village_id": store.village_id}
    if village is None:
        return {"area_id": None, "village_id": None}
    if role == "grid":
        raise Invalid(_("网格员需要指定屯/组"))
    if role in ("supervisor", "admin") and village.level != "village":
        return {"area_id": village.id, "village_id": None}
    return {"area_id": village.id, "village_id": village.id if village.level == "village" else None}


def create_user(*, phone: str, name: str, password: str, role: str, area: Area | None = None,
                household: Household | None = None, store=None, hamlets: list[Area] = (), actor=None) -> User:
    """Create a login with one role (several hamlets for a grid manager). Fails if the phone is taken."""
    phone = normalize_phone(phone)
    if not PHONE_RE.fullmatch(phone):
        raise Invalid(_("手机号应为 11 位数字"), fields={"phone": [_("格式不对")]})
    if role not in ROLES:
        raise Invalid(_("未知角色 %(role)s", role=role), fields={"role": [", ".join(ROLES)]})
    problem = password_problem(password, phone=phone)
    if problem:
        raise Invalid(problem, fields={"password": [problem]})
    if db.session.scalar(select(User.id).where(User.phone == phone)) is not None:
        raise Conflict(_("手机号 %(phone)s 已注册", phone=phone), code="phone_taken")
    if household is not None and area is not None and household.village_id != area.id:
        raise Invalid(_("这户不在这个村"))
    if store is not None and area is not None and store.village_id != area.id:
        raise Invalid(_("这个商店不在这个村"))
    user = User(phone=phone, name=name.strip(), password_hash=hash_password(password))
    db.session.add(user)
    if role == "grid":
        if not hamlets:
            raise Invalid(_("网格员需要指定屯/组"))
        for hamlet in hamlets:
            user.grants.append(RoleGrant(role="grid", area_id=hamlet.id, village_id=hamlet.parent_id))
    else:
        user.grants.append(RoleGrant(role=role, **_grant_scope(role, area, household, store)))
    if role == "resident" and household is not None:
        user.resident_id = next((m.id for m in household.members if normalize_phone(m.phone) == phone),
                                household.head.id if household.head and household.head.name == name.strip()
                                else None)
    db.session.flush()
    audit("user.create", actor=actor, village_id=user.grants[0].village_id, target=user,
          detail={"role": role, "phone": phone[:3] + "****" + phone[-4:]})
    return user
