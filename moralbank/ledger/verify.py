"""Recompute the ledger and compare it with every cache built on it.

Checks, for every account, cached balance == credits − debits; for every
village, the balances sum to zero; every transfer stays inside its village;
every reversal mirrors its original; and every settlement equals its store's
net redemptions of its month. Then the checks other domains registered with
``ledger.hooks`` run (the rankings': every household's period scores equal what
its award, deduction and reversal transfers add up to). It reads the ledger in
a streaming way, so it runs on a county database too.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import column, func, select, table
from sqlalchemy.orm import aliased

from ..extensions import db
from ..periods import periods_of
from . import hooks
from .models import Account, Transfer


@dataclass
class Report:
    accounts: int = 0
    transfers: int = 0
    villages: int = 0
    discrepancies: list[str] = field(default_factory=list)
    #: rows read by the registered checks, by what they are (``score_rows``: the rankings' period scores)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    @property
    def score_rows(self) -> int:
        """Period score rows checked (``flask ledger verify`` prints it)."""
        return self.counts.get("score_rows", 0)


def verify() -> Report:
    """Recompute balances (and, through the registered checks, scores) from the transfers; list
    every discrepancy."""
    report = Report()
    session = db.session

    credits = dict(session.execute(
        select(Transfer.credit_account_id, func.sum(Transfer.amount)).group_by(Transfer.credit_account_id)).all())
    debits = dict(session.execute(
        select(Transfer.debit_account_id, func.sum(Transfer.amount)).group_by(Transfer.debit_account_id)).all())
    village_sums: dict[int, int] = defaultdict(int)
    account_kind: dict[int, tuple[str, int | None]] = {}
    for account_id, village_id, kind, household_id, balance in session.execute(
            select(Account.id, Account.village_id, Account.kind, Account.household_id, Account.balance)):
        report.accounts += 1
        account_kind[account_id] = (kind, household_id)
        expected = int(credits.get(account_id) or 0) - int(debits.get(account_id) or 0)
        if expected != balance:
            report.discrepancies.append(
                f"account {account_id} ({kind}): cached balance {balance} != {expected} from transfers")
        village_sums[village_id] += balance
    report.villages = len(village_sums)
    for village_id, total in sorted(village_sums.items()):
        if total != 0:
            report.discrepancies.append(f"village {village_id}: balances sum to {total}, not 0")

    report.transfers = session.scalar(select(func.count()).select_from(Transfer)) or 0

    debit_acc, credit_acc = aliased(Account), aliased(Account)
    for transfer_id, village_id, d_village, c_village in session.execute(
            select(Transfer.id, Transfer.village_id, debit_acc.village_id, credit_acc.village_id)
            .join(debit_acc, debit_acc.id == Transfer.debit_account_id)
            .join(credit_acc, credit_acc.id == Transfer.credit_account_id)
            .where((debit_acc.village_id != Transfer.village_id) | (credit_acc.village_id != Transfer.village_id))):
        report.discrepancies.append(
            f"transfer {transfer_id}: village {village_id} but accounts in villages {d_village}, {c_village}")

    original = aliased(Transfer)
    for rid, oid, r_amt, o_amt, r_deb, r_cred, o_deb, o_cred, o_code in session.execute(
            select(Transfer.id, original.id, Transfer.amount, original.amount,
                   Transfer.debit_account_id, Transfer.credit_account_id,
                   original.debit_account_id, original.credit_account_id, original.code)
            .join(original, original.id == Transfer.reverses_id)):
        if r_amt != o_amt or r_deb != o_cred or r_cred != o_deb or o_code == "reversal":
            report.discrepancies.append(f"transfer {rid}: does not mirror the transfer {oid} it reverses")

    _verify_settlements(report)
    for check in hooks.verify_checks():
        check(report, account_kind)
    return report


#: the stores' settlements, read as a bare table: the ledger imports no domain, and all it needs
#: of a settlement is its store, month and points (the money moved is the ledger's own transfer).
#: Still, "a settlement equals the month's net redemptions" is the stores' rule, not the ledger's:
#: it should become a check the stores register with ``ledger.hooks.verify_check`` (left here while
#: the stores package is being split).
_SETTLEMENTS = table("settlements", column("id"), column("store_id"), column("period"), column("points"))


def _verify_settlements(report: Report) -> None:
    """Every settlement equals what its store was owed for its month when verify runs: the
    redemption transfers crediting the store's account in that (local) month, less those
    reversed — the statement's sum. A reversal or a redemption that slipped past a settlement
    shows here; so does a settlement row that disagrees with its transfer."""
    session = db.session
    reversal = aliased(Transfer)
    net: dict[tuple[int, str], int] = defaultdict(int)
    for account_id, amount, created_at in session.execute(
            select(Transfer.credit_account_id, Transfer.amount, Transfer.created_at)
            .outerjoin(reversal, reversal.reverses_id == Transfer.id)
            .where(Transfer.code == "redemption", Transfer.redemption_id.is_not(None), reversal.id.is_(None))
            .execution_options(yield_per=5000)):
        net[(account_id, periods_of(created_at)[0])] += amount

    settlements = _SETTLEMENTS
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
