"""A store's settled months: once the committee has paid a store for a month, no redemption
lands in that month and none of its redemptions is reversed (the statement and the payment
would disagree).

Settling, redeeming and reversing a redemption each lock the store's account row first
(``ledger.store_account(lock=True)``), before they read or write the month, so per store
they happen one after the other on PostgreSQL: a settlement either sees a reversal or a
redemption committed, or is seen by it and refuses it here. (SQLite's write transactions
are serial already.) The account row is the lock because every one of them writes it
anyway, and taking it first keeps one lock order: store account, items, household account.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import func, select, update
from sqlalchemy.orm import aliased

from ..errors import Conflict
from ..extensions import db
from ..ledger.models import Account, Transfer
from .. import periods
from .models import Item, RedemptionLine, Settlement


def settled_month(store_id: int, moment: datetime) -> str | None:
    """The (local) month of ``moment`` if the store has been paid for it, else None."""
    month = periods.containing("month", moment)
    settled = db.session.scalar(select(Settlement.id).where(Settlement.store_id == store_id,
                                                            Settlement.period == month))
    return month if settled is not None else None


def prepare_reversal(original: Transfer) -> None:
    """Before a redemption is reversed: lock its store as ``settle`` does, refuse if its month has
    been settled, and put back on the shelf what it took.

    Runs in the reversal's transaction after the ledger has ruled out a replay, so the stock
    comes back once, with the points, or not at all.
    """
    account = db.session.scalar(select(Account).where(Account.id == original.credit_account_id)
                                .with_for_update())
    if account is None or account.store_id is None:
        return
    month = settled_month(account.store_id, original.created_at)
    if month is not None:
        raise Conflict(_("%(month)s 已与商店结算，这笔兑换不能再冲正", month=month), code="period_settled")
    if original.redemption_id is None:
        return
    table = Item.__table__
    taken = db.session.execute(
        select(RedemptionLine.item_id, func.sum(RedemptionLine.quantity))
        .where(RedemptionLine.redemption_id == original.redemption_id)
        .group_by(RedemptionLine.item_id).order_by(RedemptionLine.item_id)).all()
    for item_id, quantity in taken:  # item-id order, as redeem() takes them
        db.session.execute(update(table).where(table.c.id == item_id).values(stock=table.c.stock + quantity))
        cached = db.session.identity_map.get(db.session.identity_key(Item, item_id))
        if cached is not None:
            db.session.expire(cached, ["stock"])


def verify_settlements(report, account_kind: dict) -> None:
    """Every settlement equals what its store was owed for its month when verify runs: the
    redemption transfers crediting the store's account in that (local) month, less those
    reversed — the statement's sum. A reversal or a redemption that slipped past a settlement
    shows here; so does a settlement row that disagrees with its transfer. (A ``ledger.hooks``
    verify check, registered by the package.)"""
    session = db.session
    reversal = aliased(Transfer)
    net: dict[tuple[int, str], int] = defaultdict(int)
    for account_id, amount, created_at in session.execute(
            select(Transfer.credit_account_id, Transfer.amount, Transfer.created_at)
            .outerjoin(reversal, reversal.reverses_id == Transfer.id)
            .where(Transfer.code == "redemption", Transfer.redemption_id.is_not(None), reversal.id.is_(None))
            .execution_options(yield_per=5000)):
        net[(account_id, periods.containing("month", created_at))] += amount

    settlements = Settlement.__table__
    for settlement_id, period, points, account_id, moved in session.execute(
            select(settlements.c.id, settlements.c.period, settlements.c.points, Account.id, Transfer.amount)
            .select_from(settlements)
            .outerjoin(Account, Account.store_id == settlements.c.store_id)
            .outerjoin(Transfer, (Transfer.settlement_id == settlements.c.id) & (Transfer.code == "settlement"))
            .order_by(settlements.c.id)):
        owed = net.get((account_id, period), 0)
        if moved is None:
            report.discrepancies.append(f"settlement {settlement_id} ({period}): no settlement transfer")
        elif moved != points:
            report.discrepancies.append(
                f"settlement {settlement_id} ({period}): {points} points but its transfer moved {moved}")
        if points != owed:
            report.discrepancies.append(
                f"settlement {settlement_id} (store account {account_id}, {period}): settled {points} != "
                f"{owed} net redemptions of the month (redeemed less reversed)")
