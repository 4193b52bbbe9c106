"""Verbs of stores: open a store, stock items, and redeem points (the foundation's part)."""
from __future__ import annotations

from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import update

from ..database import in_write_transaction
from ..errors import Invalid
from ..extensions import db
from ..ledger import service as ledger
from ..people.models import Area, Household
from .models import Item, Redemption, RedemptionLine, Store


def create_store(village: Area, *, name: str, address: str | None = None) -> Store:
    """Register a store of a village and open its account."""
    store = Store(village_id=village.id, name=name, address=address)
    db.session.add(store)
    db.session.flush()
    ledger.open_store_account(store)
    return store


def add_item(store: Store, *, name: str, points: int, stock: int, unit: str = "件") -> Item:
    """Put goods on a store's shelf with a points price and a stock count."""
    if points <= 0 or stock < 0:
        raise Invalid(_("价格必须为正，库存不能为负"))
    item = Item(village_id=store.village_id, store_id=store.id, name=name, points=points, stock=stock, unit=unit)
    db.session.add(item)
    return item


class OutOfStock(Invalid):
    code = "out_of_stock"


def redeem(household: Household, store: Store, *, items: list[tuple[Item, int]] = (), points: int | None = None,
           clerk=None, idempotency_key: str, at: datetime | None = None) -> Redemption:
    """Spend a household's points at a store: take stock, debit the household, credit the store.

    One transaction: stock is taken with a conditional UPDATE (never below 0),
    the balance with the ledger's guarded debit; any refusal rolls all back.
    """
    assert in_write_transaction()
    if household.village_id != store.village_id:
        raise Invalid(_("只能在本村的商店使用积分"))
    lines = []
    total = 0
    for item, quantity in items:
        if item.store_id != store.id or not item.active:
            raise Invalid(_("商品不属于这个商店"))
        if quantity <= 0:
            raise Invalid(_("数量必须为正"))
        taken = db.session.execute(update(Item.__table__).where(Item.__table__.c.id == item.id,
                                                                 Item.__table__.c.stock >= quantity)
                                   .values(stock=Item.__table__.c.stock - quantity)).rowcount
        if taken != 1:
            raise OutOfStock(_("%(name)s 库存不足", name=item.name))
        db.session.expire(item, ["stock"])
        lines.append(RedemptionLine(item_id=item.id, name=item.name, unit_points=item.points, quantity=quantity))
        total += item.points * quantity
    if points is not None:
        total += points
    if total <= 0:
        raise Invalid(_("请选择商品或填写积分"))
    redemption = Redemption(village_id=store.village_id, store_id=store.id, household_id=household.id,
                            points=total, clerk_id=getattr(clerk, "id", None), lines=lines)
    if at is not None:
        redemption.created_at = at
    db.session.add(redemption)
    db.session.flush()
    ledger.transfer(debit=ledger.household_account(household.id), credit=ledger.store_account(store.id),
                    amount=total, code="redemption", idempotency_key=idempotency_key, actor=clerk,
                    reason=store.name, redemption_id=redemption.id, at=at)
    return redemption
