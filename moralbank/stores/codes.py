"""Payment codes and paper cards: a resident's one-time code (QR and short number), the clerk's
lookup of it, and the printed card whose QR plus the household's PIN unlock a code at the shop."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..audit.service import record as audit
from ..database import in_write_transaction, require_write_transaction, utcnow
from ..errors import Conflict, Forbidden, NotFound
from ..extensions import db
from ..people import access
from ..people.auth import check_password, hash_password
from ..people.models import Area, Household, User
from .catalogue import _require_clerk
from .models import CodeState, HouseholdCard, RedemptionCode, Store
from .pins import check_pin

CODE_DIGITS = 8
#: failed PINs in a row that lock a paper card until it is re-issued
CARD_PIN_LIMIT = 5
#: how long a code unlocked from a paper card stays valid at the shop
CARD_CODE_TTL = timedelta(minutes=10)
#: how far back a replaced code's expiry is set: before its creation (lifetimes are at most an hour)
ENDED_BACKDATE = timedelta(days=1)
#: the least time a code the resident's page opens on has left (half the lifetime when that is shorter):
#: a code about to run out is replaced rather than shown
MIN_SHOWN_LEFT = timedelta(seconds=60)


class CodeUsed(Conflict):
    code = "code_used"


class CodeExpired(Conflict):
    code = "code_expired"


class CodeReplaced(Conflict):
    """The household asked for a newer code, which ended this one (换一个码)."""
    code = "code_replaced"


class UnknownCode(NotFound):
    code = "unknown_code"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def code_token(salt: str) -> str:
    """The token of a payment code: HMAC-SHA256(SECRET_KEY, salt), 192 bits, URL-safe."""
    mac = hmac.new(current_app.config["SECRET_KEY"].encode(), f"redemption-code:{salt}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:24]).decode()


# --- payment codes ---------------------------------------------------------------------------

@dataclass
class IssuedCode:
    record: RedemptionCode
    token: str

    @classmethod
    def of(cls, record: RedemptionCode) -> "IssuedCode":
        return cls(record, code_token(record.salt))

    @property
    def url(self) -> str:
        from ..edge import public_url
        return public_url("shop.redeem_page", t=self.token)


def _new_code(household: Household, ttl: timedelta, *, creator: User | None, card: HouseholdCard | None = None,
              store: Store | None = None) -> IssuedCode:
    """A fresh code with a random 8-digit number unique in the village (retried on collision)."""
    now = utcnow()
    for _attempt in range(10):
        salt = secrets.token_hex(16)  # 128 bits from the OS's secure source
        token = code_token(salt)
        number = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        record = RedemptionCode(village_id=household.village_id, household_id=household.id, code=number,
                                token_hash=_digest(token), salt=salt, created_at=now, expires_at=now + ttl,
                                created_by_id=getattr(creator, "id", None), card_id=getattr(card, "id", None),
                                store_id=getattr(store, "id", None))
        savepoint = db.session.begin_nested()
        db.session.add(record)
        try:
            savepoint.commit()
            return IssuedCode(record, token)
        except IntegrityError:
            savepoint.rollback()
    raise Conflict(_("付款码生成失败，请重试"))  # pragma: no cover - 10 collisions in 10^8


def issue_code(user: User) -> IssuedCode:
    """A resident's one-time payment code for their household (valid for the village's code TTL).

    One open code per household: the new code ends the household's earlier open codes (their
    expiry is set a day back, before their own creation: over on any server's clock, and the mark
    of a replaced code), so a resident who mints codes in a loop holds one live number at a time,
    not thousands for a clerk to stumble on; a clerk who types an ended code is told it was
    replaced (``_check_usable``). Codes unlocked from a paper card at a
    shop are the clerk's, for one store, and are left alone. How often a household may mint is
    capped at the edge (``throttle.code_mint``).
    """
    require_write_transaction()
    household = access.own_household(user)
    if household is None:
        raise Forbidden(_("只有村民可以生成付款码"))
    # The household's row lock orders two racing requests, so they cannot both leave a code open.
    household = db.session.get(Household, household.id, with_for_update=True)
    village = db.session.get(Area, household.village_id)
    now = utcnow()
    table = RedemptionCode.__table__
    db.session.execute(update(table).where(table.c.household_id == household.id, table.c.card_id.is_(None),
                                           table.c.consumed_at.is_(None), table.c.expires_at > now)
                       .values(expires_at=now - ENDED_BACKDATE))
    return _new_code(household, timedelta(seconds=village.code_ttl_seconds), creator=user)


def _replaced(record: RedemptionCode) -> bool:
    """Whether a code was ended by a newer code of its household: it expires before it was made."""
    return record.card_id is None and record.expires_at < record.created_at


def code_state(record: RedemptionCode, now: datetime | None = None) -> CodeState:
    """Where the code stands (``now`` defaults to the present): used, replaced, expired or open."""
    if record.consumed_at is not None:
        return CodeState.USED
    if record.expires_at <= (now or utcnow()):
        return CodeState.REPLACED if _replaced(record) else CodeState.EXPIRED
    return CodeState.OPEN


def household_code(user: User, code: str) -> RedemptionCode:
    """One of the user's household's codes, by short number or token (for its QR image)."""
    household_ids = access.resident_household_ids(user)
    record = db.session.scalar(select(RedemptionCode).where(
        RedemptionCode.household_id.in_(household_ids or {-1}),
        (RedemptionCode.code == code) | (RedemptionCode.token_hash == _digest(code))))
    if record is None:
        raise UnknownCode(_("找不到这个付款码"))
    return record


def drawable_code(user: User, code: str) -> RedemptionCode:
    """One of the user's household's codes whose QR may be drawn (the web page and the API share
    this rule): not used, not expired, and not a code a clerk unlocked from a paper card at the
    shop — that one is for the till, its picture belongs on no phone."""
    record = household_code(user, code)
    state = code_state(record)
    if state is CodeState.USED or record.card_id is not None:
        raise NotFound(_("这个付款码已经用过了"), code="code_used")
    if state is CodeState.REPLACED:
        raise NotFound(_("这个付款码已换成新的，请刷新"), code="code_replaced")
    if state is not CodeState.OPEN:
        raise NotFound(_("这个付款码已过期，请刷新"), code="code_expired")
    return record


def latest_open_code(household_id: int) -> RedemptionCode | None:
    """The household's newest code worth showing on the resident's page, if any: open, and with at
    least ``MIN_SHOWN_LEFT`` to go (or half its lifetime, for villages with codes shorter than two
    minutes). None tells the page to mint a fresh one instead of opening on a code about to end."""
    now = utcnow()
    record = db.session.scalar(select(RedemptionCode).where(
        RedemptionCode.household_id == household_id, RedemptionCode.consumed_at.is_(None),
        RedemptionCode.card_id.is_(None), RedemptionCode.expires_at > now)
        .order_by(RedemptionCode.id.desc()).limit(1))
    if record is None:
        return None
    least = min(MIN_SHOWN_LEFT, (record.expires_at - record.created_at) / 2)
    return record if record.expires_at - now >= least else None


def paid_since(household_id: int, since: datetime) -> RedemptionCode | None:
    """The household's newest code a shop took at or after ``since``, whichever code it was (the
    resident's page polls this, so a code replaced on the screen after the clerk scanned it still
    shows 已付款 once the clerk confirms)."""
    return db.session.scalar(select(RedemptionCode).where(
        RedemptionCode.household_id == household_id, RedemptionCode.consumed_at.is_not(None),
        RedemptionCode.consumed_at >= since).order_by(RedemptionCode.consumed_at.desc()).limit(1))


def find_code(store: Store, text: str) -> RedemptionCode:
    """A code of the store's village by short number (spaces allowed) or token; 404 if unknown."""
    text = (text or "").strip()
    if not text or len(text) > 64:
        raise UnknownCode(_("没有这个付款码，请核对号码"), fields={"code": [_("不存在")]})
    number = text.replace(" ", "").replace("-", "")
    if number.isdigit():
        record = db.session.scalar(select(RedemptionCode).where(RedemptionCode.village_id == store.village_id,
                                                                RedemptionCode.code == number))
    else:
        record = db.session.scalar(select(RedemptionCode).where(RedemptionCode.token_hash == _digest(text)))
        if record is not None and record.village_id != store.village_id:
            record = None
    if record is None or (record.store_id is not None and record.store_id != store.id):
        raise UnknownCode(_("没有这个付款码，请核对号码"), fields={"code": [_("不存在")]})
    return record


def _check_usable(record: RedemptionCode) -> None:
    state = code_state(record)
    if state is CodeState.USED:
        raise CodeUsed(_("这个付款码已经用过了，请让村民刷新付款码"))
    if state is CodeState.REPLACED:
        raise CodeReplaced(_("这个付款码已作废：村民已换了新的付款码，请让村民出示最新的付款码"))
    if state is CodeState.EXPIRED:
        raise CodeExpired(_("这个付款码已过期，请让村民刷新付款码"))


# --- paper cards -----------------------------------------------------------------------------

def issue_card(actor: User, household: Household, pin: str) -> tuple[HouseholdCard, str]:
    """A printed card with a long-lived QR for a household without a phone; earlier cards are revoked."""
    require_write_transaction()
    village = db.session.get(Area, household.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以发卡"))
    check_pin(pin, _household_phones(household))
    now = utcnow()
    table = HouseholdCard.__table__
    db.session.execute(update(table).where(table.c.household_id == household.id, table.c.revoked_at.is_(None))
                       .values(revoked_at=now))
    token = secrets.token_urlsafe(24)
    card = HouseholdCard(village_id=village.id, household_id=household.id, token_hash=_digest(token),
                         pin_hash=hash_password(pin), issued_by_id=actor.id)
    db.session.add(card)
    db.session.flush()
    audit("card.issue", actor=actor, village_id=village.id, target=card, detail={"household_id": household.id})
    return card, token


def _household_phones(household: Household) -> list[str]:
    """The phone numbers of a household: its members' and its residents' logins' (for the PIN policy)."""
    from ..people.models import Resident, RoleGrant

    members = select(Resident.phone).where(Resident.household_id == household.id, Resident.phone.is_not(None))
    logins = select(User.phone).join(RoleGrant, RoleGrant.user_id == User.id).where(
        RoleGrant.household_id == household.id)
    return list(db.session.scalars(members.union(logins)))


def revoke_card(actor: User, household: Household) -> int:
    """Revoke every live card of a household; returns how many."""
    require_write_transaction()
    village = db.session.get(Area, household.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以停用卡片"))
    table = HouseholdCard.__table__
    count = db.session.execute(update(table).where(table.c.household_id == household.id,
                                                   table.c.revoked_at.is_(None)).values(revoked_at=utcnow())).rowcount
    audit("card.revoke", actor=actor, village_id=village.id, target=household, detail={"cards": count})
    return count


def card_for_token(store: Store, token: str) -> HouseholdCard:
    card = db.session.scalar(select(HouseholdCard).where(HouseholdCard.token_hash == _digest(token or "")))
    if card is None or card.village_id != store.village_id:
        raise UnknownCode(_("不认识这张卡"))
    if card.revoked_at is not None:
        raise Conflict(_("这张卡已停用，请到村委会补办"), code="card_revoked")
    return card


def unlock_card(clerk: User, store: Store, token: str, pin: str) -> IssuedCode:
    """At the shop: card QR + the household's PIN give a one-time code for this store only.

    Runs its own transaction (call it outside any other): a wrong PIN must be
    counted even though the request is refused.
    """
    if in_write_transaction():  # a caller's rollback would undo the count of a wrong PIN
        raise RuntimeError("unlock_card commits failed attempts itself: call it outside write_transaction()")
    from ..database import write_transaction

    _require_clerk(clerk, store)
    card = card_for_token(store, token)
    if card.failed_pins >= CARD_PIN_LIMIT:
        raise Forbidden(_("密码错误次数太多，卡已锁定，请到村委会重新办卡"), code="card_locked")
    # The argon2 check (~50 ms) runs before the write transaction, so SQLite's write lock is not held
    # through it; the lock state is checked again inside, so a card locked meanwhile stays locked.
    accepted = check_password(_PinHolder(card.pin_hash), str(pin or ""))
    db.session.rollback()
    with write_transaction():
        card = db.session.get(HouseholdCard, card.id, with_for_update=True, populate_existing=True)
        if card.revoked_at is not None:
            raise Conflict(_("这张卡已停用，请到村委会补办"), code="card_revoked")
        if card.failed_pins >= CARD_PIN_LIMIT:
            raise Forbidden(_("密码错误次数太多，卡已锁定，请到村委会重新办卡"), code="card_locked")
        if accepted:
            card.failed_pins = 0
            issued = _new_code(db.session.get(Household, card.household_id), CARD_CODE_TTL, creator=clerk,
                               card=card, store=store)
            audit("card.unlock", actor=clerk, village_id=store.village_id, target=card)
        else:
            table = HouseholdCard.__table__
            db.session.execute(update(table).where(table.c.id == card.id)
                               .values(failed_pins=table.c.failed_pins + 1))
            left = max(CARD_PIN_LIMIT - card.failed_pins - 1, 0)
            audit("card.pin_failed", actor=clerk, village_id=store.village_id, target=card, detail={"left": left})
    if not accepted:
        raise Forbidden(_("密码不对，还可以试 %(n)s 次", n=left), code="wrong_pin")
    return issued


class _PinHolder:
    """Lets check_password verify a PIN hash (no rehash written back for cards)."""

    def __init__(self, pin_hash: str):
        self.password_hash = pin_hash
