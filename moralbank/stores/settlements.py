"""What a store is owed and its payment: the month's statement, and the settlement that records
the committee paid it (the settled-month lock and check live in ``settled``)."""
from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import periods
from ..audit.service import record as audit
from ..database import require_write_transaction
from ..errors import Conflict, Forbidden, Invalid
from ..extensions import db
from ..ledger import service as ledger
from ..ledger.models import Transfer
from ..people import access
from ..people.models import Area, User
from ..people.service import mask_name
from .models import Redemption, Settlement, Store

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
    listing = [{"id": r.id, "transfer_id": transfer_id, "created_at": r.created_at, "household_id": r.household_id,
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
    require_write_transaction()
    village = db.session.get(Area, store.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以结算"))
    period = periods.check_month(period)  # one spelling per month: one settlement key per month
    if not periods.is_over(period):
        raise Invalid(_("%(period)s 还没结束，月底以后才能结算", period=period), code="period_open")
    # Locked before the month is read: a redemption or a reversal of this store waits for this
    # settlement to commit, or this one reads the month after theirs committed (PostgreSQL).
    ledger.store_account(store.id, lock=True)
    existing = db.session.scalar(select(Settlement.id).where(Settlement.store_id == store.id,
                                                             Settlement.period == period))
    if existing is not None:
        raise Conflict(_("%(period)s 已经结算过了", period=period), code="already_settled")
    owed = statement(actor, store, period)
    refusal = settlement_refusal(owed)
    if refusal is not None:
        raise refusal
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


def settlement_refusal(owed: Statement) -> Invalid | Conflict | None:
    """Why the month of a statement cannot be settled now (not over, settled, nothing owed), or
    None: what ``settle`` refuses, for a page to say before anyone confirms."""
    if not periods.is_over(owed.period):
        return Invalid(_("%(period)s 还没结束，月底以后才能结算", period=owed.period), code="period_open")
    if owed.settlement is not None:
        return Conflict(_("%(period)s 已经结算过了", period=owed.period), code="already_settled")
    if owed.points <= 0:
        return Invalid(_("%(period)s 没有需要结算的积分", period=owed.period), code="nothing_to_settle")
    return None


def unsettled_months(village: Area, months: int = 12) -> list[tuple[Store, str, int]]:
    """(store, month, points owed) for each finished month of the last ``months`` in which a store
    of the village took points that are neither reversed nor settled yet, oldest first: the
    committee's to-do at the start of a month. Reads the village's redemptions of that span once."""
    current = periods.current_month()
    first = periods.shift(current, -months)
    start, end = periods.bounds(first)[0], periods.bounds(current)[0]
    reversed_ids = select(Transfer.reverses_id).where(Transfer.reverses_id.is_not(None),
                                                      Transfer.village_id == village.id)
    rows = db.session.execute(
        select(Redemption.store_id, Transfer.created_at, Redemption.points)
        .join(Transfer, (Transfer.redemption_id == Redemption.id) & (Transfer.code == "redemption"))
        .where(Redemption.village_id == village.id, Transfer.created_at >= start, Transfer.created_at < end,
               Transfer.id.not_in(reversed_ids))).all()
    owed: dict[tuple[int, str], int] = {}
    for store_id, created_at, points in rows:
        key = (store_id, periods.periods_of(created_at)[0])
        owed[key] = owed.get(key, 0) + points
    settled = set(db.session.execute(select(Settlement.store_id, Settlement.period).where(
        Settlement.village_id == village.id, Settlement.period >= first)).all())
    shops = {shop.id: shop for shop in db.session.scalars(select(Store).where(Store.village_id == village.id))}
    return [(shops[store_id], month, points)
            for (store_id, month), points in sorted(owed.items(), key=lambda pair: (pair[0][1], pair[0][0]))
            if points > 0 and (store_id, month) not in settled and store_id in shops]
