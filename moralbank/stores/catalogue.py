"""Stores of a village and the goods on their shelves: registering a store, items, prices and stock."""
from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from ..audit.service import record as audit
from ..errors import Forbidden, Invalid
from ..extensions import db
from ..ledger import service as ledger
from ..people import access
from ..people.models import Area, User
from .models import Item, Store


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


def _require_clerk(user: User, store: Store) -> None:
    if not is_clerk_of(user, store):
        raise Forbidden(_("您不是这个商店的店员"), code="not_your_store")
