"""Offline vouchers: a resident holds points for one store; the store's page checks the voucher
without a network and records the sale; the sale syncs later and is spent at most once.

* ``issue_voucher``: the hold (``ledger.holds.place``) and the voucher, signed by the village's
  key (``offline_keys``), shown as a QR and an 8-digit number.
* ``sync_sales``: each sale is checked (signature or number, store, expiry, limit) and then claims
  its voucher by a conditional UPDATE: the first sale posts the hold for the points taken (the rest
  returns) and becomes an ordinary redemption; the same sale again is a ``replay``; a different
  one is ``voucher_used`` and is kept as a conflict for the committee. Stock the server thought
  gone is taken down to zero and the shortfall flagged on the voucher: the goods already left.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..audit.service import record as audit
from ..database import require_write_transaction, utcnow
from ..errors import Forbidden, Invalid, NotFound
from ..extensions import db
from ..ledger import holds
from ..ledger import service as ledger
from ..ledger.models import Account
from ..people import access
from ..people.models import Area, Household, User
from ..people.service import mask_name
from . import offline_keys as keys
from .catalogue import _require_clerk
from .models import Item, Redemption, RedemptionLine, Store
from .offline_models import OfflineConflict, OfflineVoucher

#: statuses of a synced sale (the API's ``results[].status``)
SALE_STATUSES = ("posted", "replay", "voucher_used", "expired", "wrong_store", "bad_signature", "over_limit")
CODE_DIGITS = 8
#: PBKDF2 rounds of the typed-code check a shop's page keeps offline
CODE_CHECK_ROUNDS = 20_000
MAX_VOUCHER_POINTS = 100_000


class VoucherLimit(Invalid):
    code = "voucher_limit"


@dataclass
class IssuedVoucher:
    voucher: OfflineVoucher
    token: str
    url: str


def code_check(code: str, salt: str) -> str:
    """What a shop's page compares a typed number with: PBKDF2-SHA256(code, salt)."""
    return hashlib.pbkdf2_hmac("sha256", code.encode(), bytes.fromhex(salt), CODE_CHECK_ROUNDS).hex()


def voucher_token(voucher: OfflineVoucher) -> str:
    """The voucher's token, signed afresh (any signature of its payload is the same voucher)."""
    village = db.session.get(Area, voucher.village_id)
    key = keys.village_key(voucher.village_id)
    return keys.sign(key, {"v": voucher.id, "h": voucher.household_id, "s": voucher.store_id, "p": voucher.points,
                           "e": keys.expiry_seconds(voucher.expires_at), "k": village.code})


def voucher_url(token: str) -> str:
    """The URL in the QR: the shop's offline page, the token in the fragment (never sent to a server)."""
    from ..edge import public_url
    return public_url("shop.offline_page") + "#v=" + token


def issued(voucher: OfflineVoucher) -> IssuedVoucher:
    token = voucher_token(voucher)
    return IssuedVoucher(voucher, token, voucher_url(token))


def voucher_state(voucher: OfflineVoucher, now: datetime | None = None) -> str:
    """open, used, expired (not usable; points still held until expire-holds) or returned."""
    if voucher.sale_digest is not None:
        return "used"
    hold = db.session.get(holds.Hold, voucher.hold_id) if voucher.hold_id else None
    if hold is not None and hold.status == "voided":
        return "returned"
    return "expired" if voucher.expires_at <= (now or utcnow()) else "open"


def open_vouchers(household_id: int) -> list[OfflineVoucher]:
    """The household's vouchers not yet used whose points are still held, newest first."""
    return list(db.session.scalars(
        select(OfflineVoucher).join(holds.Hold, holds.Hold.id == OfflineVoucher.hold_id)
        .where(OfflineVoucher.household_id == household_id, OfflineVoucher.sale_digest.is_(None),
               holds.Hold.status == "pending").order_by(OfflineVoucher.id.desc())))


def recent_vouchers(household_id: int, limit: int = 20) -> list[OfflineVoucher]:
    return list(db.session.scalars(select(OfflineVoucher).where(OfflineVoucher.household_id == household_id)
                                   .order_by(OfflineVoucher.id.desc()).limit(limit)))


def _new_code(village_id: int) -> str:
    for _attempt in range(20):
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        if db.session.scalar(select(OfflineVoucher.id).where(OfflineVoucher.village_id == village_id,
                                                             OfflineVoucher.code == code)) is None:
            return code
    raise Invalid(_("请重试"))  # pragma: no cover - 10^8 numbers


def issue_voucher(user: User, store: Store, points: int, *, household_id: int | None = None,
                  limit: int | None = None) -> IssuedVoucher:
    """Hold ``points`` of a household for ``store`` and make the voucher (resident for their own
    household; committee for any household of the village). 422 ``insufficient_points``,
    ``voucher_limit``."""
    require_write_transaction()
    village = db.session.get(Area, store.village_id)
    if household_id is None:
        household = access.own_household(user)
        if household is None:
            raise Forbidden(_("只有村民可以领取离线券"), code="not_resident")
    else:
        access.require(access.is_committee(user, village), _("只有村委会可以为其他户领取离线券"))
        household = access.get_or_404(Household, household_id, _("找不到这户"), village_id=store.village_id)
    if household.village_id != store.village_id:
        raise Invalid(_("只能在本村的商店使用积分"))
    if not store.active:
        raise Forbidden(_("这个商店已停用"), code="store_inactive")
    if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= MAX_VOUCHER_POINTS:
        raise Invalid(_("积分数必须是 1 到 %(n)s 的整数", n=MAX_VOUCHER_POINTS),
                      fields={"points": [_("1 到 %(n)s", n=MAX_VOUCHER_POINTS)]})
    # The household's account row first: two requests of one household then count open vouchers
    # one after the other (PostgreSQL; SQLite's write transactions are serial anyway).
    db.session.execute(select(Account.id).where(Account.household_id == household.id).with_for_update())
    allowed = current_app.config["OFFLINE_VOUCHER_LIMIT"] if limit is None else limit
    if len(open_vouchers(household.id)) >= allowed:
        raise VoucherLimit(_("最多同时持有 %(n)s 张离线券，请先用掉或等它过期", n=allowed),
                           fields={"points": [_("最多 %(n)s 张", n=allowed)]})
    now = utcnow()
    expires_at = now + timedelta(days=current_app.config["OFFLINE_VOUCHER_DAYS"])
    code, salt = _new_code(village.id), secrets.token_hex(16)
    voucher = OfflineVoucher(village_id=village.id, store_id=store.id, household_id=household.id, code=code,
                             code_salt=salt, code_check=code_check(code, salt), points=points, created_at=now,
                             expires_at=expires_at, created_by_id=user.id)
    db.session.add(voucher)
    db.session.flush()
    grace = timedelta(hours=current_app.config["OFFLINE_SYNC_GRACE_HOURS"])
    try:
        hold = holds.place(household.id, points, expires_at=expires_at + grace, idempotency_key=f"voucher:{voucher.id}",
                           actor=user, reason=_("离线券 %(code)s · %(store)s", code=code, store=store.name))
    except ledger.InsufficientPoints:
        have = max(ledger.household_account(household.id).balance, 0)
        raise ledger.InsufficientPoints(_("积分不足：需要 %(need)s 分，可用 %(have)s 分", need=points, have=have),
                                        fields={"points": [_("最多 %(n)s", n=have)]})
    voucher.hold_id = hold.id
    audit("store.offline_voucher", actor=user, village_id=village.id, target=voucher,
          detail={"points": points, "store_id": store.id, "household_id": household.id})
    return issued(voucher)


def store_open_vouchers(store: Store) -> list[OfflineVoucher]:
    """Unused, unexpired vouchers of a store (its page keeps their typed-code checks offline)."""
    now = utcnow()
    return list(db.session.scalars(
        select(OfflineVoucher).join(holds.Hold, holds.Hold.id == OfflineVoucher.hold_id)
        .where(OfflineVoucher.store_id == store.id, OfflineVoucher.sale_digest.is_(None),
               OfflineVoucher.expires_at > now, holds.Hold.status == "pending")
        .order_by(OfflineVoucher.id).limit(2000)))


def household_label(household_id: int) -> str:
    household = db.session.get(Household, household_id)
    return f"{mask_name(household.head.name if household.head else '')} · {household.number}"


# --- sync ----------------------------------------------------------------------------------------

def sale_digest(points: int, items: list[tuple[int, int]], taken_at: datetime) -> str:
    """What makes two reports of a sale the same sale: its points, items and moment."""
    canonical = json.dumps({"p": points, "i": sorted([list(pair) for pair in items]),
                            "t": keys.expiry_seconds(taken_at)}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _find_voucher(store: Store, token: str) -> OfflineVoucher | None:
    """The voucher a token (or its typed 8-digit number) names in the store's village, if genuine."""
    token = (token or "").strip()
    if token.isdigit() and len(token) == CODE_DIGITS:
        # A typed number finds only this store's vouchers: guessing numbers learns nothing of other shops'.
        return db.session.scalar(select(OfflineVoucher).where(OfflineVoucher.village_id == store.village_id,
                                                              OfflineVoucher.store_id == store.id,
                                                              OfflineVoucher.code == token))
    key = keys.village_key(store.village_id, create=False)
    if key is None:
        return None
    try:
        payload = keys.verify(key, token)
    except keys.BadToken:
        return None
    voucher = db.session.get(OfflineVoucher, payload["v"])
    if voucher is None or voucher.village_id != store.village_id or voucher.household_id != payload["h"] \
            or voucher.store_id != payload["s"] or voucher.points != payload["p"]:
        return None
    return voucher


def _result(voucher, status: str, redemption_id=None) -> dict:
    body = {"voucher_id": getattr(voucher, "id", None), "status": status}
    if redemption_id is not None:
        body["redemption_id"] = redemption_id
    return body


def _take_stock(store: Store, items: list[tuple[int, int]]) -> tuple[list[RedemptionLine], int]:
    """Lines for the sale's items of this store, stock taken down to zero at most; the shortfall."""
    lines, short = [], 0
    merged: dict[int, int] = {}
    for item_id, quantity in items:
        merged[item_id] = merged.get(item_id, 0) + quantity
    table = Item.__table__
    for item_id in sorted(merged):
        item = db.session.get(Item, item_id)
        if item is None or item.store_id != store.id:
            continue
        quantity = merged[item_id]
        taken = db.session.execute(update(table).where(table.c.id == item.id, table.c.stock >= quantity)
                                   .values(stock=table.c.stock - quantity)).rowcount
        if taken != 1:
            left = db.session.scalar(select(table.c.stock).where(table.c.id == item.id).with_for_update())
            short += quantity - left
            db.session.execute(update(table).where(table.c.id == item.id).values(stock=0))
        db.session.expire(item, ["stock"])
        lines.append(RedemptionLine(item_id=item.id, name=item.name, unit_points=item.points, quantity=quantity))
    return lines, short


def _conflict(voucher: OfflineVoucher, store: Store, clerk: User, points: int, items, taken_at, digest) -> None:
    dialect = db.session.connection().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(insert(OfflineConflict.__table__).values(
        village_id=voucher.village_id, voucher_id=voucher.id, store_id=store.id, clerk_id=clerk.id, points=points,
        items=[list(pair) for pair in items], taken_at=taken_at, sale_digest=digest, received_at=utcnow())
        .on_conflict_do_nothing())


def sync_sale(clerk: User, store: Store, *, token: str, points: int, items: list[tuple[int, int]],
              taken_at: datetime) -> dict:
    """One sale taken offline: checked, then posted once (see the module's docstring)."""
    voucher = _find_voucher(store, token)
    if voucher is None:
        return _result(None, "bad_signature")
    if voucher.store_id != store.id:
        return _result(voucher, "wrong_store")
    digest = sale_digest(points, items, taken_at)
    if voucher.sale_digest is None:
        if points > voucher.points:
            return _result(voucher, "over_limit")
        # The hold's row first (after the store's): an expire-holds voiding it meanwhile is seen here.
        hold = holds.locked(voucher.hold_id) if voucher.hold_id else None
        if taken_at > voucher.expires_at or hold is None or hold.status != "pending":
            return _result(voucher, "expired")
        now = utcnow()
        table = OfflineVoucher.__table__
        claimed = db.session.execute(update(table).where(table.c.id == voucher.id, table.c.sale_digest.is_(None))
                                     .values(sale_digest=digest, sold_points=points, taken_at=taken_at,
                                             synced_at=now, clerk_id=clerk.id)).rowcount
        if claimed == 1:
            return _post(voucher, hold, store, clerk, points, items, taken_at, now)
    # Spent already (earlier, or by a racing sync that committed first): the same sale is a replay.
    db.session.refresh(voucher)
    if voucher.sale_digest == digest:
        return _result(voucher, "replay", voucher.redemption_id)
    _conflict(voucher, store, clerk, points, items, taken_at, digest)
    return _result(voucher, "voucher_used")


def _post(voucher, hold, store, clerk, points, items, taken_at, now) -> dict:
    lines, short = _take_stock(store, items)
    redemption = Redemption(village_id=store.village_id, store_id=store.id, household_id=voucher.household_id,
                            points=points, clerk_id=clerk.id, lines=lines, created_at=now)
    db.session.add(redemption)
    db.session.flush()
    holds.post(hold, points, credit=ledger.store_account(store.id), actor=clerk, redemption_id=redemption.id,
               reason=_("%(store)s · 离线券 %(code)s", store=store.name, code=voucher.code), at=now)
    table = OfflineVoucher.__table__
    db.session.execute(update(table).where(table.c.id == voucher.id)
                       .values(redemption_id=redemption.id, stock_short=max(short, 0)))
    db.session.expire(voucher)
    audit("store.offline_sale", actor=clerk, village_id=store.village_id, target=redemption,
          detail={"voucher_id": voucher.id, "points": points, "store_id": store.id, "stock_short": short,
                  "taken_at": taken_at.isoformat()})
    return _result(voucher, "posted", redemption.id)


def sync_sales(clerk: User, store: Store, sales: list[dict]) -> list[dict]:
    """Post a batch of offline sales in the caller's transaction; one result per sale, in order."""
    require_write_transaction()
    _require_clerk(clerk, store)
    # The store's account row first, as a redemption and a settlement take it (see ``redemptions``).
    ledger.store_account(store.id, lock=True)
    return [sync_sale(clerk, store, token=sale["token"], points=sale["points"],
                      items=[(line["item_id"], line["quantity"]) for line in sale.get("items") or []],
                      taken_at=sale["taken_at"]) for sale in sales]


def conflicts(village: Area, limit: int = 200) -> list[OfflineConflict]:
    """Second sales of spent vouchers, newest first (the committee's list)."""
    return list(db.session.scalars(select(OfflineConflict).where(OfflineConflict.village_id == village.id)
                                   .order_by(OfflineConflict.id.desc()).limit(limit)))


def short_sales(village: Area, limit: int = 200) -> list[OfflineVoucher]:
    """Offline sales that sold goods beyond the stock the server knew, newest first."""
    return list(db.session.scalars(select(OfflineVoucher).where(OfflineVoucher.village_id == village.id,
                                                                OfflineVoucher.stock_short > 0)
                                   .order_by(OfflineVoucher.id.desc()).limit(limit)))


def held_of(household_id: int) -> int:
    return holds.held(household_id)


def voucher_for(user: User, voucher_id: int) -> OfflineVoucher:
    """A voucher its household's members or the village committee may see; else 404."""
    voucher = access.get_or_404(OfflineVoucher, voucher_id, _("找不到这张离线券"))
    village = db.session.get(Area, voucher.village_id)
    if voucher.household_id not in access.resident_household_ids(user) and not access.is_committee(user, village):
        raise NotFound(_("找不到这张离线券"))
    return voucher


def count_open(household_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(OfflineVoucher).join(
        holds.Hold, holds.Hold.id == OfflineVoucher.hold_id).where(
        OfflineVoucher.household_id == household_id, OfflineVoucher.sale_digest.is_(None),
        holds.Hold.status == "pending")) or 0
