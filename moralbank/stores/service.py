"""Verbs of stores: items and stock, payment codes, redemptions, statements, settlements, cards.

A redemption is one transaction: the payment code is consumed by a conditional
UPDATE (so exactly one of any number of racing requests wins), stock is taken
by conditional UPDATEs (never below zero), the household is debited by the
ledger's guarded debit and the store credited. Any refusal rolls all of it back,
so the code stays usable and nothing is half-done. A redemption, a settlement and
the reversal of a redemption first lock the store's account row, so on PostgreSQL
they happen one after the other per store (see ``settled``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import periods
from ..audit.service import record as audit
from ..database import in_write_transaction, utcnow
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..extensions import db
from ..ledger import service as ledger
from ..ledger.models import Transfer
from ..people import access
from ..people.auth import check_password, hash_password
from ..people.models import Area, Household, User
from ..people.service import mask_name
from .models import HouseholdCard, Item, Redemption, RedemptionCode, RedemptionLine, Settlement, Store
from .settled import settled_month
from .pins import check_pin

CODE_DIGITS = 8
#: points one redemption may move (far above any shop basket; keeps within the points column)
MAX_REDEMPTION = 1_000_000
#: failed PINs in a row that lock a paper card until it is re-issued
CARD_PIN_LIMIT = 5
#: how long a code unlocked from a paper card stays valid at the shop
CARD_CODE_TTL = timedelta(minutes=10)
#: how far back a replaced code's expiry is set: before its creation (lifetimes are at most an hour)
ENDED_BACKDATE = timedelta(days=1)


class OutOfStock(Invalid):
    code = "out_of_stock"


class CodeUsed(Conflict):
    code = "code_used"


class CodeExpired(Conflict):
    code = "code_expired"


class UnknownCode(NotFound):
    code = "unknown_code"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def code_token(salt: str) -> str:
    """The token of a payment code: HMAC-SHA256(SECRET_KEY, salt), 192 bits, URL-safe."""
    mac = hmac.new(current_app.config["SECRET_KEY"].encode(), f"redemption-code:{salt}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:24]).decode()


# --- stores and items ------------------------------------------------------------------------

def create_store(village: Area, *, name: str, address: str | None = None) -> Store:
    """Register a store of a village and open its account."""
    store = Store(village_id=village.id, name=name, address=address)
    db.session.add(store)
    db.session.flush()
    ledger.open_store_account(store)
    return store


def add_item(store: Store, *, name: str, points: int, stock: int, unit: str = "件", actor=None) -> Item:
    """Put goods on a store's shelf with a points price and a stock count (committee)."""
    if actor is not None:
        village = db.session.get(Area, store.village_id)
        access.require(access.is_committee(actor, village), _("只有村委会可以上架商品"))
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise Invalid(_("请填写商品名称"), fields={"name": [_("必填")]})
    if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= 100000:
        raise Invalid(_("价格必须是正整数"), fields={"points": [_("正整数")]})
    if isinstance(stock, bool) or not isinstance(stock, int) or not 0 <= stock <= 1000000:
        raise Invalid(_("库存不能为负"), fields={"stock": [_("0 或正整数")]})
    item = Item(village_id=store.village_id, store_id=store.id, name=name, points=points, stock=stock,
                unit=(unit or "件")[:8])
    db.session.add(item)
    db.session.flush()
    if actor is not None:
        audit("item.create", actor=actor, village_id=store.village_id, target=item,
              detail={"name": name, "points": points, "stock": stock})
    return item


def is_clerk_of(user: User | None, store: Store) -> bool:
    return access.is_clerk_of(user, store)


def update_item(actor: User, item: Item, **changes) -> Item:
    """Committee: name, price, unit, stock, on/off shelf. The store's clerk: stock counts only."""
    store = db.session.get(Store, item.store_id)
    village = db.session.get(Area, store.village_id)
    committee = access.is_committee(actor, village)
    if not committee:
        access.require(is_clerk_of(actor, store), _("没有权限修改这个商品"))
        if set(changes) - {"stock"}:
            raise Forbidden(_("店员只能修改库存"), code="clerk_stock_only")
    if "name" in changes:
        name = (changes["name"] or "").strip()
        if not name or len(name) > 64:
            raise Invalid(_("请填写商品名称"), fields={"name": [_("必填")]})
        item.name = name
    if "points" in changes:
        points = changes["points"]
        if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= 100000:
            raise Invalid(_("价格必须是正整数"), fields={"points": [_("正整数")]})
        item.points = points
    if "stock" in changes:
        stock = changes["stock"]
        if isinstance(stock, bool) or not isinstance(stock, int) or not 0 <= stock <= 1000000:
            raise Invalid(_("库存不能为负"), fields={"stock": [_("0 或正整数")]})
        item.stock = stock
    if "unit" in changes:
        item.unit = (changes["unit"] or "件")[:8]
    if "active" in changes:
        item.active = bool(changes["active"])
    audit("item.update", actor=actor, village_id=store.village_id, target=item, detail=changes)
    return item


def village_stores(village: Area) -> list[Store]:
    return db.session.scalars(select(Store).where(Store.village_id == village.id).order_by(Store.id)).all()


def clerk_store(user: User) -> Store | None:
    store_id = access.clerk_store_id(user)
    return db.session.get(Store, store_id) if store_id else None


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
    assert in_write_transaction()
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
    if record.consumed_at is not None or record.card_id is not None:
        raise NotFound(_("这个付款码已经用过了"), code="code_used")
    if record.expires_at <= utcnow():
        raise NotFound(_("这个付款码已过期，请刷新"), code="code_expired")
    return record


def latest_open_code(household_id: int) -> RedemptionCode | None:
    """The household's newest code still usable (for the resident's page), if any."""
    return db.session.scalar(select(RedemptionCode).where(
        RedemptionCode.household_id == household_id, RedemptionCode.consumed_at.is_(None),
        RedemptionCode.card_id.is_(None), RedemptionCode.expires_at > utcnow())
        .order_by(RedemptionCode.id.desc()).limit(1))


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
    if record.consumed_at is not None:
        raise CodeUsed(_("这个付款码已经用过了，请让村民刷新付款码"))
    if record.expires_at <= utcnow():
        if _replaced(record):
            raise CodeExpired(_("这个付款码已作废：村民已换了新的付款码，请让村民出示最新的付款码"))
        raise CodeExpired(_("这个付款码已过期，请让村民刷新付款码"))


def _require_clerk(user: User, store: Store) -> None:
    if not is_clerk_of(user, store):
        raise Forbidden(_("您不是这个商店的店员"), code="not_your_store")


@dataclass
class Preview:
    code: RedemptionCode
    household: Household
    label: str
    balance: int


def preview(clerk: User, store: Store, text: str) -> Preview:
    """What the clerk sees before confirming: the masked name and the points available. Changes nothing."""
    _require_clerk(clerk, store)
    record = find_code(store, text)
    _check_usable(record)
    household = db.session.get(Household, record.household_id)
    head = household.head.name if household.head else ""
    balance = ledger.household_account(household.id).balance
    return Preview(record, household, f"{mask_name(head)} · {household.number}", max(balance, 0))


def redeem_with_code(clerk: User, store: Store, text: str, *, items: list[tuple[int, int]] = (),
                     points: int | None = None) -> Redemption:
    """Spend points at a store with a payment code: all of it in the caller's transaction, or none."""
    assert in_write_transaction()
    _require_clerk(clerk, store)
    if not store.active:
        raise Forbidden(_("这个商店已停用"), code="store_inactive")
    record = find_code(store, text)
    db.session.refresh(record, with_for_update=True)
    _check_usable(record)
    now = utcnow()
    table = RedemptionCode.__table__
    consumed = db.session.execute(update(table).where(table.c.id == record.id, table.c.consumed_at.is_(None),
                                                      table.c.expires_at > now)
                                  .values(consumed_at=now)).rowcount
    if consumed != 1:
        raise CodeUsed(_("这个付款码已经用过了，请让村民刷新付款码"))
    household = db.session.get(Household, record.household_id)
    chosen = []
    for item_id, quantity in items:
        item = db.session.get(Item, item_id)
        if item is None or item.store_id != store.id:
            raise NotFound(_("这个商店没有这件商品"), code="unknown_item", fields={"items": [str(item_id)]})
        chosen.append((item, quantity))
    if points is not None and (isinstance(points, bool) or not isinstance(points, int) or points <= 0):
        raise Invalid(_("积分数必须是正整数"), fields={"points": [_("正整数")]})
    redemption = redeem(household, store, items=chosen, points=points, clerk=clerk, code=record)
    audit("store.redeem", actor=clerk, village_id=store.village_id, target=redemption,
          detail={"points": redemption.points, "store_id": store.id})
    return redemption


def redeem(household: Household, store: Store, *, items: list[tuple[Item, int]] = (), points: int | None = None,
           clerk=None, code: RedemptionCode | None = None, at: datetime | None = None) -> Redemption:
    """Take stock, debit the household, credit the store — inside the caller's transaction.

    Stock is taken with a conditional UPDATE (never below 0); the balance by the
    ledger's guarded debit. The ledger key is the redemption's own id.
    """
    assert in_write_transaction()
    if household.village_id != store.village_id:
        raise Invalid(_("只能在本村的商店使用积分"))
    # The store's account row first, as settle() and a redemption's reversal take it: a settlement
    # then either sees this redemption committed or is seen by it (so it lands in no paid month).
    ledger.store_account(store.id, lock=True)
    when = at or utcnow()
    month = settled_month(store.id, when)
    if month is not None:
        raise Conflict(_("%(month)s 已与商店结算，不能再记入这个月的兑换", month=month), code="period_settled")
    lines = []
    total = 0
    merged: dict[int, list] = {}
    for item, quantity in items:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity <= 1000:
            raise Invalid(_("数量必须为正"), fields={"items": [_("数量必须为正")]})
        merged.setdefault(item.id, [item, 0])[1] += quantity
    # Stock rows are taken in item-id order whatever the cart's order, so two carts naming the
    # same items lock them in one order (on PostgreSQL opposite orders deadlock).
    for item, quantity in sorted(merged.values(), key=lambda entry: entry[0].id):
        if item.store_id != store.id or not item.active:
            raise Invalid(_("商品不属于这个商店"), code="unknown_item")
        table = Item.__table__
        taken = db.session.execute(update(table).where(table.c.id == item.id, table.c.stock >= quantity)
                                   .values(stock=table.c.stock - quantity)).rowcount
        if taken != 1:
            raise OutOfStock(_("%(name)s 库存不足", name=item.name), fields={"items": [item.name]})
        db.session.expire(item, ["stock"])
    for item, quantity in merged.values():
        lines.append(RedemptionLine(item_id=item.id, name=item.name, unit_points=item.points, quantity=quantity))
        total += item.points * quantity
    if points is not None:
        total += points
    if total <= 0:
        raise Invalid(_("请选择商品或填写积分"), code="empty_cart")
    if total > MAX_REDEMPTION:
        raise Invalid(_("一次兑换最多 %(n)s 分", n=MAX_REDEMPTION), code="too_large", fields={"points": [_("太多")]})
    redemption = Redemption(village_id=store.village_id, store_id=store.id, household_id=household.id,
                            points=total, clerk_id=getattr(clerk, "id", None), lines=lines,
                            code_id=getattr(code, "id", None), created_at=when)
    db.session.add(redemption)
    db.session.flush()
    try:
        ledger.transfer(debit=ledger.household_account(household.id), credit=ledger.store_account(store.id),
                        amount=total, code="redemption", idempotency_key=f"redemption:{redemption.id}",
                        actor=clerk, reason=store.name, redemption_id=redemption.id, at=when)
    except ledger.InsufficientPoints:
        balance = ledger.household_account(household.id).balance
        raise ledger.InsufficientPoints(_("积分不足：需要 %(need)s 分，可用 %(have)s 分", need=total,
                                          have=max(balance, 0)))
    return redemption


def balance_of(household_id: int) -> int:
    return ledger.household_account(household_id).balance


def balance_after(redemption: Redemption) -> int:
    """The household's balance just after ``redemption`` (a receipt or list shown later): the balance
    now, less what moved on the account since (only the transfers after it are read)."""
    account = ledger.household_account(redemption.household_id)
    paid = (select(Transfer.id).where(Transfer.redemption_id == redemption.id, Transfer.code == "redemption")
            .scalar_subquery())
    since = db.session.scalar(select(func.coalesce(func.sum(
        case((Transfer.credit_account_id == account.id, Transfer.amount), else_=-Transfer.amount)), 0))
        .where(or_(Transfer.debit_account_id == account.id, Transfer.credit_account_id == account.id),
               Transfer.id > paid))
    return account.balance - int(since)


# --- statements and settlement ---------------------------------------------------------------

@dataclass
class Statement:
    store: Store
    period: str
    redemptions: list
    gross: int          # points credited to the store by redemptions in the period
    reversed: int       # of which reversed
    points: int         # net points owed
    fen: int            # money owed in fen at the village's rate
    settlement: Settlement | None


def _require_statement_reader(user: User, store: Store) -> Area:
    village = db.session.get(Area, store.village_id)
    if not access.can_read_statement(user, store):
        raise Forbidden(_("没有权限查看这个商店的对账单"))
    return village


def statement(user: User, store: Store, period: str) -> Statement:
    """Every redemption at the store in a month, the points and the money owed; reads the ledger."""
    village = _require_statement_reader(user, store)
    period = periods.check_month(period)  # one spelling per month: one settlement key per month
    start, end = periods.bounds(period)
    account = ledger.store_account(store.id)
    rows = db.session.execute(
        select(Redemption, Transfer.id).join(Transfer, (Transfer.redemption_id == Redemption.id)
                                             & (Transfer.code == "redemption"))
        .where(Transfer.credit_account_id == account.id, Transfer.created_at >= start, Transfer.created_at < end)
        .order_by(Redemption.id)).all()
    transfer_ids = [transfer_id for _redemption, transfer_id in rows]
    reversed_ids = set(db.session.scalars(select(Transfer.reverses_id).where(
        Transfer.reverses_id.in_(transfer_ids or [-1]))))
    gross = sum(redemption.points for redemption, _id in rows)
    reversed_points = sum(redemption.points for redemption, transfer_id in rows if transfer_id in reversed_ids)
    heads = {}
    household_ids = {redemption.household_id for redemption, _id in rows}
    if household_ids:
        from ..people.models import Resident
        heads = dict(db.session.execute(select(Resident.household_id, Resident.name).where(
            Resident.household_id.in_(household_ids), Resident.is_head.is_(True))).all())
    listing = [{"id": r.id, "created_at": r.created_at, "household_id": r.household_id,
                "household": mask_name(heads.get(r.household_id, "")), "points": r.points,
                "reversed": transfer_id in reversed_ids,
                "lines": [{"name": line.name, "quantity": line.quantity, "unit_points": line.unit_points}
                          for line in r.lines]} for r, transfer_id in rows]
    settlement = db.session.scalar(select(Settlement).where(Settlement.store_id == store.id,
                                                            Settlement.period == period))
    net = gross - reversed_points
    return Statement(store, period, listing, gross, reversed_points, net, net * village.fen_per_point, settlement)


def settle(actor: User, store: Store, period: str) -> Settlement:
    """Record that the committee paid the store for a month: one ledger transfer store → issuance.

    Once per store and period (a unique key); a month not yet over cannot be settled.
    """
    assert in_write_transaction()
    village = db.session.get(Area, store.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以结算"))
    period = periods.check_month(period)  # one spelling per month: one settlement key per month
    start, end = periods.bounds(period)
    if end > utcnow():
        raise Invalid(_("%(period)s 还没结束，月底以后才能结算", period=period), code="period_open")
    # Locked before the month is read: a redemption or a reversal of this store waits for this
    # settlement to commit, or this one reads the month after theirs committed (PostgreSQL).
    ledger.store_account(store.id, lock=True)
    existing = db.session.scalar(select(Settlement.id).where(Settlement.store_id == store.id,
                                                             Settlement.period == period))
    if existing is not None:
        raise Conflict(_("%(period)s 已经结算过了", period=period), code="already_settled")
    owed = statement(actor, store, period)
    if owed.points <= 0:
        raise Invalid(_("%(period)s 没有需要结算的积分", period=period), code="nothing_to_settle")
    settlement = Settlement(village_id=village.id, store_id=store.id, period=period, points=owed.points,
                            amount_fen=owed.fen, settled_by_id=actor.id)
    db.session.add(settlement)
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict(_("%(period)s 已经结算过了", period=period), code="already_settled")
    ledger.transfer(debit=ledger.store_account(store.id), credit=ledger.village_account(village.id, "issuance"),
                    amount=owed.points, code="settlement", idempotency_key=f"settlement:{store.id}:{period}",
                    actor=actor, reason=_("%(period)s 结算", period=period), settlement_id=settlement.id)
    audit("store.settle", actor=actor, village_id=village.id, target=settlement,
          detail={"store_id": store.id, "period": period, "points": owed.points, "fen": owed.fen})
    return settlement


# --- paper cards -----------------------------------------------------------------------------

def issue_card(actor: User, household: Household, pin: str) -> tuple[HouseholdCard, str]:
    """A printed card with a long-lived QR for a household without a phone; earlier cards are revoked."""
    assert in_write_transaction()
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
    assert in_write_transaction()
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
    assert not in_write_transaction(), "unlock_card commits failed attempts itself"
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
