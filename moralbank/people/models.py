"""Areas, households, residents, users, role grants and API tokens."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from flask_login import UserMixin
from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, utcnow
from ..extensions import db

AREA_LEVELS = ("county", "town", "village", "hamlet")
ROLES = ("admin", "committee", "grid", "resident", "clerk", "supervisor")

DEFAULT_STAR_THRESHOLDS = [20, 50, 100, 160, 240]


class Area(db.Model):
    """A node of the tree county → town → village → hamlet. A village is the tenant."""

    __tablename__ = "areas"
    __table_args__ = (
        CheckConstraint(f"level IN ({','.join(map(repr, AREA_LEVELS))})", name="level"),
        CheckConstraint("notice_days >= 0", name="notice_days"),
        CheckConstraint("code_ttl_seconds >= 30", name="code_ttl"),
        CheckConstraint("approval_threshold >= 0", name="approval_threshold"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the parent area; NULL for a county (the root)
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("areas.id"), index=True)
    #: county, town, village or hamlet
    level: Mapped[str] = mapped_column(String(10))
    #: short code, unique; villages use it in URLs and the CLI (e.g. BLM)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    #: Chinese name, e.g. 八里庙村
    name: Mapped[str] = mapped_column(String(64))
    #: village setting: days an approved award stays in public notice (0 = post at once)
    notice_days: Mapped[int] = mapped_column(default=3)
    #: village setting: lifetime of a payment code in seconds
    code_ttl_seconds: Mapped[int] = mapped_column(default=300)
    #: village setting: awards with |points| above this need an approver other than the proposer
    approval_threshold: Mapped[int] = mapped_column(default=10)
    #: village setting: money paid to a store per point redeemed, in fen (100 = 1 yuan per point)
    fen_per_point: Mapped[int] = mapped_column(default=100, server_default="100")
    #: village setting: ascending score thresholds for stars (5 entries, or 10 for 十星)
    star_thresholds: Mapped[list] = mapped_column(JSON, default=lambda: list(DEFAULT_STAR_THRESHOLDS))
    #: village setting: new rules, new versions and retirements are drafts until a meeting adopts them
    rule_changes_need_meeting: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: village setting: a posted 一票否决 award vetoes honours until the end of this period (month|quarter|year)
    veto_period: Mapped[str] = mapped_column(String(8), default="year", server_default="year")
    #: village setting: a vetoed household may not spend its points
    veto_blocks_redemption: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: village setting: a vetoed household is left out of the plain ranking too
    veto_hides_ranking: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: village setting: when points lapse — {"mode": "none"}, {"mode": "annual", "on": "12-31"} or
    #: {"mode": "months", "months": 24} (see ``villages.EXPIRY_MODES`` and ``awards.expiry``)
    expiry: Mapped[Optional[dict]] = mapped_column(JSON, default=lambda: {"mode": "none"})
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    parent: Mapped[Optional["Area"]] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list["Area"]] = relationship(back_populates="parent", order_by="Area.code")

    def __repr__(self) -> str:
        return f"<Area {self.level} {self.code} {self.name}>"

    @property
    def village(self) -> Optional["Area"]:
        """The village this area belongs to (itself for a village, its parent for a hamlet)."""
        if self.level == "village":
            return self
        if self.level == "hamlet":
            return self.parent
        return None

    def ancestors(self) -> list["Area"]:
        """This area and every area above it, nearest first."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def stars_for(self, score: int) -> int:
        """Stars earned by ``score`` under this village's thresholds."""
        return sum(1 for threshold in (self.star_thresholds or []) if score >= threshold)


class Household(db.Model):
    """户: the unit that earns and spends points."""

    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("village_id", "number", name="uq_households_village_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the village (tenant); every growing table carries it
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    #: the hamlet (屯/组) the household lives in
    hamlet_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    #: household number on the village roster (户号), unique in the village
    number: Mapped[str] = mapped_column(String(32))
    #: house address or door plate, optional
    address: Mapped[Optional[str]] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    village: Mapped[Area] = relationship(foreign_keys=[village_id])
    hamlet: Mapped[Area] = relationship(foreign_keys=[hamlet_id])
    members: Mapped[list["Resident"]] = relationship(
        back_populates="household", order_by="(Resident.is_head.desc(), Resident.id)"
    )

    @property
    def head(self) -> Optional["Resident"]:
        """户主, or the first member when none is marked."""
        for member in self.members:
            if member.is_head:
                return member
        return self.members[0] if self.members else None

    def __repr__(self) -> str:
        return f"<Household {self.number}>"


class Resident(db.Model):
    """A person of a household. ID numbers are stored masked only."""

    __tablename__ = "residents"
    __table_args__ = (
        Index("uq_residents_household_head", "household_id", unique=True,
              sqlite_where=db.text("is_head"), postgresql_where=db.text("is_head")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    #: mobile number, optional (children, elders without a phone)
    phone: Mapped[Optional[str]] = mapped_column(String(20), index=True)
    #: the ID number masked at entry (1101**********1234); the full number is never stored
    id_number_masked: Mapped[Optional[str]] = mapped_column(String(24))
    #: relation to the head: 户主, 配偶, 子, 女, 父, 母, …
    relation: Mapped[str] = mapped_column(String(16), default="户主")
    is_head: Mapped[bool] = mapped_column(default=False)

    household: Mapped[Household] = relationship(back_populates="members")


class User(UserMixin, db.Model):
    """A login (by phone number). What it may do comes from its role grants."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(32))
    #: argon2id hash
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    #: the resident this login belongs to, for residents
    resident_id: Mapped[Optional[int]] = mapped_column(ForeignKey("residents.id"))
    #: bumped when the password changes or sessions are revoked; part of the session id
    session_version: Mapped[int] = mapped_column(default=1)
    #: preferred language (zh_CN or en)
    locale: Mapped[Optional[str]] = mapped_column(String(8))
    #: the text size chosen with 大字 ("large" or "normal"; NULL = never chosen, the browser's cookie applies)
    text_size: Mapped[Optional[str]] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    grants: Mapped[list["RoleGrant"]] = relationship(back_populates="user", lazy="selectin",
                                                     cascade="all, delete-orphan")
    #: the declarations of this user's relatives' households (``people.kinships``; loaded with the
    #: login, so a proposal or approval checks for a conflict of interest without another query)
    kin: Mapped[list["Kinship"]] = relationship("Kinship", foreign_keys="Kinship.user_id", viewonly=True,
                                                 lazy="select")
    resident: Mapped[Optional[Resident]] = relationship()

    def get_id(self) -> str:
        # Changing the password invalidates old session cookies.
        return f"{self.id}:{self.session_version}"

    @property
    def is_active(self) -> bool:  # flask-login
        return self.active

    @property
    def roles(self) -> list[str]:
        return sorted({grant.role for grant in self.grants})

    def has_role(self, *roles: str) -> bool:
        return any(grant.role in roles for grant in self.grants)

    def __repr__(self) -> str:
        return f"<User {self.phone} {self.roles}>"


class RoleGrant(db.Model):
    """One role of a user, scoped to an area (village, hamlet, town, county), a store or a household."""

    __tablename__ = "role_grants"
    __table_args__ = (
        CheckConstraint(f"role IN ({','.join(map(repr, ROLES))})", name="role"),
        Index("ix_role_grants_scope", "role", "area_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    #: committee → village, grid → hamlet, supervisor → town or county, admin → any area (or NULL: all)
    area_id: Mapped[Optional[int]] = mapped_column(ForeignKey("areas.id"))
    #: clerk → store
    store_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stores.id"))
    #: resident → household
    household_id: Mapped[Optional[int]] = mapped_column(ForeignKey("households.id"))
    #: the village the grant works in (NULL for town/county-wide grants); for filtering
    village_id: Mapped[Optional[int]] = mapped_column(ForeignKey("areas.id"), index=True)

    user: Mapped[User] = relationship(back_populates="grants")
    area: Mapped[Optional[Area]] = relationship(foreign_keys=[area_id])
    village: Mapped[Optional[Area]] = relationship(foreign_keys=[village_id])
    household: Mapped[Optional[Household]] = relationship()


class ApiToken(db.Model):
    """A bearer token of the JSON API. Only its SHA-256 is stored; revocable and expiring."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: hex SHA-256 of the token
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    #: the address the token was issued to
    created_from: Mapped[Optional[str]] = mapped_column(String(64))

    user: Mapped[User] = relationship()
