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

from flask_babel import gettext as _
from sqlalchemy import case, func, or_, select, update

from ..audit.service import record as audit
from ..database import require_write_transaction, utcnow
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..extensions import db
from ..ledger import service as ledger
from ..ledger.models import Transfer
from ..people.models import Household, User
from ..people.service import mask_name
from .catalogue import _require_clerk
from .codes import CodeUsed, _check_usable, find_code
from .guards import check_spending
from .models import Item, Redemption, RedemptionCode, RedemptionLine, Store
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


def redeem_with_code(clerk: User, store: Store, text: str, *, items: list[tuple[int, int]] = (),
                     points: int | None = None) -> Redemption:
    """Spend points at a store with a payment code: all of it in the caller's transaction, or none."""
    require_write_transaction()
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
    require_write_transaction()
    if household.village_id != store.village_id:
        raise Invalid(_("只能在本村的商店使用积分"))
    check_spending(household)
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
