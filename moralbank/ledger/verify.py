"""Recompute the ledger and compare it with every cache built on it.

Checks, for every account, cached balance == credits − debits; for every
village, the balances sum to zero; every transfer stays inside its village;
and every reversal mirrors its original. Then the checks other domains
registered with ``ledger.hooks`` run: the rankings' (every household's period
scores equal what its award, deduction and reversal transfers add up to) and
the stores' (every settlement equals its store's net redemptions of its month). It reads the ledger in
a streaming way, so it runs on a county database too.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from ..extensions import db
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

    for check in hooks.verify_checks():
        check(report, account_kind)
    return report
