"""Spending points at a store: the clerk's preview of a code, the redemption, and the balance a
receipt shows.

A redemption is one transaction: the payment code is consumed by a conditional
UPDATE (so exactly one of any number of racing requests wins), stock is taken
by conditional UPDATEs (never below zero), the household is debited by the
ledger's guarded debit and the store credited. Any refusal rolls all of it back,
so the code stays usable and nothing is half-done. A redemption, a settlement and
the reversal of a redemption first lock the store's account row, so on PostgreSQL
they happen one after the other per store (see ``settled``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from flask_babel import gettext as _
from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import aliased

from .. import periods
from ..audit.service import record as audit
from ..database import require_write_transaction, utcnow
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..extensions import db
from ..ledger import service as ledger
from ..ledger.models import Account, Transfer
from ..people.models import Household, User
from ..people.service import mask_name
from .catalogue import _require_clerk
from ..people.access import ID_MAX
from .codes import CodeUsed, UnknownCode, _check_usable, _digest, find_code
from .guards import check_spending
from .models import Item, Redemption, RedemptionCode, RedemptionLine, Settlement, Store
from .settled import settled_month

#: points one redemption may move (far above any shop basket; keeps within the points column)
MAX_REDEMPTION = 1_000_000


class OutOfStock(Invalid):
    code = "out_of_stock"


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


@dataclass
class Found:
    """What a redemption acts on, read in one query before its write transaction (on SQLite,
    before the write lock): the store and its account, the code, its household and account, the
    cart's items. The write checks again what it relies on (the code's state and the stock by
    guarded UPDATEs, the balance by the ledger's guarded debit)."""

    store: Store | None
    store_account: Account | None
    code: RedemptionCode | None
    household: Household | None
    household_account: Account | None
    items: dict[int, Item]


@lru_cache(maxsize=2)
def _found_query(by_number: bool):
    """Store, its account, the code (by number or token), household, its account and the cart's
    items: one joined select, built once per kind of code."""
    household_account, store_account = aliased(Account), aliased(Account)
    match = (RedemptionCode.code == bindparam("number")) if by_number else (
        RedemptionCode.token_hash == bindparam("digest"))
    return (select(Store, store_account, RedemptionCode, Household, household_account, Item)
            .select_from(Store)
            .outerjoin(store_account, store_account.store_id == Store.id)
            .outerjoin(RedemptionCode, and_(RedemptionCode.village_id == Store.village_id, match))
            .outerjoin(Household, Household.id == RedemptionCode.household_id)
            .outerjoin(household_account, household_account.household_id == RedemptionCode.household_id)
            .outerjoin(Item, and_(Item.store_id == Store.id, Item.id.in_(bindparam("items", expanding=True))))
            .where(Store.id == bindparam("store_id")))


def find_for_redemption(store_id: int, text: str, item_ids=()) -> Found:
    """Everything a redemption at ``store_id`` with code ``text`` needs, in one query. Raises
    UnknownCode for a text that cannot be a code; a code not found comes back as ``code=None``."""
    text = (text or "").strip()
    if not text or len(text) > 64:
        raise UnknownCode(_("没有这个付款码，请核对号码"), fields={"code": [_("不存在")]})
    number = text.replace(" ", "").replace("-", "")
    by_number = number.isdigit()
    params = {"store_id": store_id, "items": sorted({int(i) for i in item_ids if isinstance(i, int)
                                                      and not isinstance(i, bool) and 0 < i <= ID_MAX})}
    params.update({"number": number} if by_number else {"digest": _digest(text)})
    rows = db.session.execute(_found_query(by_number), params).all()
    if not rows:
        return Found(None, None, None, None, None, {})
    store, store_account, code, household, household_account, _item = rows[0]
    return Found(store, store_account, code, household, household_account,
                 {row[5].id: row[5] for row in rows if row[5] is not None})


@lru_cache(maxsize=1)
def _statements() -> dict:
    """The redemption's own writes, built once: the code consumed (unless the month is settled),
    stock taken, the store's account row locked (PostgreSQL)."""
    codes, items, accounts = RedemptionCode.__table__, Item.__table__, Account.__table__
    settled = select(Settlement.id).where(Settlement.store_id == bindparam("for_store"),
                                          Settlement.period == bindparam("for_month")).exists()
    return {
        "consume": update(codes).where(codes.c.id == bindparam("code_id"), codes.c.consumed_at.is_(None),
                                       codes.c.expires_at > bindparam("now"), ~settled)
                                .values(consumed_at=bindparam("now")),
        "take": update(items).where(items.c.id == bindparam("item_id"), items.c.stock >= bindparam("quantity"),
                                    items.c.active.is_(True))
                             .values(stock=items.c.stock - bindparam("quantity")),
        "lock_store": select(accounts.c.id).where(accounts.c.store_id == bindparam("store_id")).with_for_update(),
    }


def redeem_with_code(clerk: User, store: Store, text: str, *, items: list[tuple[int, int]] = (),
                     points: int | None = None, found: Found | None = None) -> Redemption:
    """Spend points at a store with a payment code: all of it in the caller's transaction, or none.

    ``found`` is what ``find_for_redemption`` read before the transaction (the API reads it before
    taking SQLite's write lock); without it, it is read here."""
    require_write_transaction()
    _require_clerk(clerk, store)
    if not store.active:
        raise Forbidden(_("这个商店已停用"), code="store_inactive")
    if found is None or found.store is not store:
        found = find_for_redemption(store.id, text, [item_id for item_id, _quantity in items])
    record = found.code
    if record is None or (record.store_id is not None and record.store_id != store.id):
        raise UnknownCode(_("没有这个付款码，请核对号码"), fields={"code": [_("不存在")]})
    chosen = []
    for item_id, quantity in items:
        item = found.items.get(item_id)
        if item is None:
            raise NotFound(_("这个商店没有这件商品"), code="unknown_item", fields={"items": [str(item_id)]})
        chosen.append((item, quantity))
    if points is not None and (isinstance(points, bool) or not isinstance(points, int) or points <= 0):
        raise Invalid(_("积分数必须是正整数"), fields={"points": [_("正整数")]})
    statements, connection = _statements(), db.session.connection()
    if connection.dialect.name == "postgresql":
        # The store's account row first, as settle() and a reversal take it (see ``settled``);
        # SQLite's write transactions are serial already.
        connection.execute(statements["lock_store"], {"store_id": store.id})
    now = utcnow()
    month = periods.containing("month", now)
    consumed = connection.execute(statements["consume"], {"code_id": record.id, "now": now,
                                                          "for_store": store.id, "for_month": month}).rowcount
    if consumed != 1:
        db.session.refresh(record)
        _check_usable(record)
        if settled_month(store.id, now) is not None:
            raise Conflict(_("%(month)s 已与商店结算，不能再记入这个月的兑换", month=month), code="period_settled")
        raise CodeUsed(_("这个付款码已经用过了，请让村民刷新付款码"))
    if found.household is None or found.household_account is None or found.store_account is None:
        raise NotFound(_("这户没有积分账户"))
    check_spending(found.household)  # 一票否决 where the village blocks spending (stores.guards)
    redemption = _redeem(found.household, store, chosen, points, clerk=clerk, code=record, when=now,
                         accounts=(found.household_account, found.store_account))
    audit("store.redeem", actor=clerk, village_id=store.village_id, target=redemption,
          detail={"points": redemption.points, "store_id": store.id})
    return redemption


def redeem(household: Household, store: Store, *, items: list[tuple[Item, int]] = (), points: int | None = None,
           clerk=None, code: RedemptionCode | None = None, at: datetime | None = None) -> Redemption:
    """Take stock, debit the household, credit the store — inside the caller's transaction.

    Stock is taken with a conditional UPDATE (never below 0); the balance by the
    ledger's guarded debit. The ledger key is the redemption's own id.
    """
    require_write_transaction()
    if household.village_id != store.village_id:
        raise Invalid(_("只能在本村的商店使用积分"))
    check_spending(household)
    # The store's account row first, as settle() and a redemption's reversal take it: a settlement
    # then either sees this redemption committed or is seen by it (so it lands in no paid month).
    store_account = ledger.store_account(store.id, lock=True)
    when = at or utcnow()
    month = settled_month(store.id, when)
    if month is not None:
        raise Conflict(_("%(month)s 已与商店结算，不能再记入这个月的兑换", month=month), code="period_settled")
    return _redeem(household, store, items, points, clerk=clerk, code=code, when=when,
                   accounts=(ledger.household_account(household.id), store_account))


def _redeem(household: Household, store: Store, items, points, *, clerk, code, when: datetime,
            accounts: tuple[Account, Account]) -> Redemption:
    """The redemption once the store is locked and its month known to be open."""
    if household.village_id != store.village_id:
        raise Invalid(_("只能在本村的商店使用积分"))
    lines = []
    total = 0
    merged: dict[int, list] = {}
    for item, quantity in items:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity <= 1000:
            raise Invalid(_("数量必须为正"), fields={"items": [_("数量必须为正")]})
        merged.setdefault(item.id, [item, 0])[1] += quantity
    # Stock rows are taken in item-id order whatever the cart's order, so two carts naming the
    # same items lock them in one order (on PostgreSQL opposite orders deadlock).
    connection = db.session.connection()
    for item, quantity in sorted(merged.values(), key=lambda entry: entry[0].id):
        if item.store_id != store.id or not item.active:
            raise Invalid(_("商品不属于这个商店"), code="unknown_item")
        taken = connection.execute(_statements()["take"], {"item_id": item.id, "quantity": quantity}).rowcount
        if taken != 1:
            db.session.refresh(item)
            if not item.active:
                raise Invalid(_("商品不属于这个商店"), code="unknown_item")
            raise OutOfStock(_("%(name)s 库存不足", name=item.name), fields={"items": [item.name]})
        db.session.expire(item, ["stock"])
    for item, quantity in merged.values():
        lines.append(RedemptionLine(item_id=item.id, village_id=store.village_id, name=item.name, unit_points=item.points,
                                    quantity=quantity))
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
    household_account, store_account = accounts
    try:
        ledger.transfer(debit=household_account, credit=store_account,
                        amount=total, code="redemption", idempotency_key=f"redemption:{redemption.id}",
                        actor=clerk, reason=store.name, redemption_id=redemption.id, at=when)
    except ledger.InsufficientPoints:
        balance = db.session.scalar(select(Account.balance).where(Account.id == household_account.id))
        raise ledger.InsufficientPoints(_("积分不足：需要 %(need)s 分，可用 %(have)s 分", need=total,
                                          have=max(balance, 0)))
    # The ledger's guarded debit returned the new balance and set it on the account it was given.
    redemption.balance_after = household_account.balance
    return redemption


def balance_of(household_id: int) -> int:
    return ledger.household_account(household_id).balance


def balance_after(redemption: Redemption) -> int:
    """The household's balance just after ``redemption`` (a receipt or list shown later): as stored
    with it; for a redemption made before that column, the balance now less what moved on the
    account since (only the transfers after it are read)."""
    if redemption.balance_after is not None:
        return redemption.balance_after
    account = ledger.household_account(redemption.household_id)
    paid = (select(Transfer.id).where(Transfer.redemption_id == redemption.id, Transfer.code == "redemption")
            .scalar_subquery())
    since = db.session.scalar(select(func.coalesce(func.sum(
        case((Transfer.credit_account_id == account.id, Transfer.amount), else_=-Transfer.amount)), 0))
        .where(or_(Transfer.debit_account_id == account.id, Transfer.credit_account_id == account.id),
               Transfer.id > paid))
    return account.balance - int(since)


# --- refusals, for whoever counts them (the metrics register here; stores import no edge) ----------

_refusal_hooks: list = []


def on_refused(fn) -> None:
    """Call ``fn(reason)`` with the error code of every refused ``redeem_with_code``."""
    if fn not in _refusal_hooks:
        _refusal_hooks.append(fn)


def _counting_refusals(redeem):
    from functools import wraps

    from ..errors import DomainError

    @wraps(redeem)
    def counted(*args, **kwargs):
        try:
            return redeem(*args, **kwargs)
        except DomainError as error:
            for hook in _refusal_hooks:
                hook(error.code)
            raise
    return counted


redeem_with_code = _counting_refusals(redeem_with_code)
