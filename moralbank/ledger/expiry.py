"""Lots: which of a household's points are how old, derived from its transfers (first in, first out).

A village may let points lapse (the ``expiry`` setting, read by ``awards.expiry``); to know what
lapses when, the ledger tells the age of every point a household holds. Nothing is stored for it:
the lots are a pure function of the household's transfers, read in the order they were written
(by id), so ``verify`` can recompute them and the resident's page, the API and ``flask ledger
expire`` all see the same lots.

The rule, transfer by transfer (``LotBook.apply``):

* **A credit opens a lot** of its amount, dated when it was written (an award, an adjustment,
  anything paid in that is not one of the returns below). Points coming back from a hold (offline
  vouchers: the ``post`` or ``void`` that ends it) go back into the lots the hold's ``pending``
  debit took them from, as a reversal's do (the hold's row names both transfers): holding points
  and letting the hold lapse cannot make old points new.
* **A debit spends the oldest points first**: it consumes open lots by date (then id), and what
  no lot covers is a *deficit* (a deduction may take a household below zero). The book remembers
  which lots each debit consumed.
* **The reversal of an award** (or of any credit) takes its points back from that very lot first;
  only what the lot no longer holds (the points were spent meanwhile) comes from the oldest others.
* **The reversal of a debit** (a redemption refunded, a deduction withdrawn) puts the points back
  into the lots they came from, with those lots' own dates: points spent and refunded are as old
  as they were, so refunding cannot make old points new. The part of the debit that was a deficit
  first lessens the deficit again; what a later credit paid towards that deficit comes back as a
  new lot dated at the reversal.
* **The reversal of a lapse** (code ``expiry``) gives the points back as a new lot dated at the
  reversal: the committee meant them to live on, and restoring them to their old lot would have
  them lapse again at the next run.
* **A lapse** (code ``expiry``, written by ``lapse``) consumes the lot its key names
  (``expiry:<household>:<lot>[:<n>]``) first, then the oldest others.
* After every credit, open lots pay off any deficit, oldest first.

So at every step ``sum(lot.left) - deficit == balance``, no lot is ever below zero, and a deficit
exists only when no lot is open. Settlements move points between a store and the sink, never a
household's: they do not touch lots (but a settled month's redemptions cannot be refunded, so their
lots stay spent). The checks are ``check_book``; ``awards.expiry`` registers them with ``verify``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select

from ..extensions import db
from .models import Account, Transfer
from .service import Posted, transfer

#: what a lot-keeping reader needs of a transfer, in this order
COLUMNS = (Transfer.id, Transfer.created_at, Transfer.code, Transfer.amount, Transfer.debit_account_id,
           Transfer.credit_account_id, Transfer.reverses_id, Transfer.idempotency_key)


@dataclass
class Lot:
    """Points a household received together: how many are left, and since when it holds them."""

    #: the transfer that opened it
    id: int
    #: when its points came in (a restored lot keeps its date)
    dated: datetime
    amount: int
    left: int
    #: how many lapses (``expiry`` transfers) have named it: the next one's key counts on
    lapses: int = 0


@dataclass
class LotBook:
    """The lots of one household account, kept transfer by transfer (see the module's rule)."""

    account_id: int
    lots: dict[int, Lot] = field(default_factory=dict)
    deficit: int = 0
    balance: int = 0
    #: for each debit: the (lot id, points) it consumed and the part that was a deficit
    consumed: dict[int, tuple[list[tuple[int, int]], int]] = field(default_factory=dict)
    #: the lapses (``expiry`` transfers) read so far: reversing one opens a new lot
    lapse_ids: set[int] = field(default_factory=set)
    #: what went wrong while applying (``check_book`` reports it)
    problems: list[str] = field(default_factory=list)

    def open_lots(self) -> list[Lot]:
        """Lots with points left, oldest first: the order spending and lapsing take them."""
        return sorted((lot for lot in self.lots.values() if lot.left > 0), key=lambda lot: (lot.dated, lot.id))

    def apply(self, row) -> None:
        """Take one transfer touching this account into the book (rows in id order). A row may carry a
        ninth column: for a hold's return (``post``/``void``), the ``pending`` debit it gives back."""
        transfer_id, created_at, code, amount, debit_id, credit_id, reverses_id, key = row[:8]
        if credit_id == self.account_id:
            self.balance += amount
            if code in HOLD_RETURNS and len(row) > 8 and row[8] is not None:
                reverses_id, code = row[8], "reversal"  # back into the lots the hold took them from
            self._credit(transfer_id, created_at, code, amount, reverses_id)
        elif debit_id == self.account_id:
            self.balance -= amount
            self._debit(transfer_id, code, amount, reverses_id, key)

    def _credit(self, transfer_id, created_at, code, amount, reverses_id) -> None:
        restored = self.consumed.get(reverses_id) if code == "reversal" else None
        if restored is not None and reverses_id not in self.lapse_ids:
            parts, deficit_part = restored
            for lot_id, points in parts:
                self.lots[lot_id].left += points
            back = min(deficit_part, self.deficit)
            self.deficit -= back
            if deficit_part > back:
                self._open(transfer_id, created_at, deficit_part - back)
        else:
            self._open(transfer_id, created_at, amount)
        self._pay_deficit()

    def _open(self, transfer_id, created_at, amount) -> None:
        self.lots[transfer_id] = Lot(id=transfer_id, dated=created_at, amount=amount, left=amount)

    def _pay_deficit(self) -> None:
        if not self.deficit:
            return
        for lot in self.open_lots():
            if not self.deficit:
                break
            paid = min(lot.left, self.deficit)
            lot.left -= paid
            self.deficit -= paid

    def _debit(self, transfer_id, code, amount, reverses_id, key) -> None:
        first = None
        if code == "reversal" and reverses_id in self.lots:
            first = self.lots[reverses_id]
        elif code == "expiry":
            self.lapse_ids.add(transfer_id)
            first = self.lots.get(lapsed_lot_id(key))
            if first is None:
                self.problems.append(f"transfer {transfer_id}: a lapse whose key {key!r} names no lot of the household")
            else:
                first.lapses += 1
        parts: list[tuple[int, int]] = []
        need = amount
        for lot in ([first] if first is not None else []) + self.open_lots():
            if not need:
                break
            taken = min(lot.left, need)
            if taken:
                lot.left -= taken
                need -= taken
                parts.append((lot.id, taken))
        if need and code == "expiry":
            self.problems.append(f"transfer {transfer_id}: a lapse of {amount} points when the household held "
                                 f"only {amount - need} in lots")
        self.deficit += need
        self.consumed[transfer_id] = (parts, need)

    @property
    def held(self) -> int:
        """Points in open lots (equal to the balance unless the household is below zero)."""
        return sum(lot.left for lot in self.lots.values())


def lapsed_lot_id(key: str) -> int | None:
    """The lot a lapse's idempotency key names (``expiry:<household>:<lot>[:<n>]``), or None."""
    parts = (key or "").split(":")
    if len(parts) in (3, 4) and parts[0] == "expiry" and parts[2].isdigit():
        return int(parts[2])
    return None


def lapse_key(household_id: int, lot: Lot) -> str:
    """The idempotency key of the next lapse of ``lot``: once per household and lot (a lot restored by
    a refund after lapsing lapses again under ``:<n>``)."""
    base = f"expiry:{household_id}:{lot.id}"
    return base if lot.lapses == 0 else f"{base}:{lot.lapses + 1}"


#: the codes of a hold's return to the household (ledger.holds): it names the hold's ``pending`` debit
HOLD_RETURNS = ("post", "void")


def _rows():
    """The transfers with, for a hold's return, the pending transfer it ends (holds.end_transfer_id)."""
    from .holds import Hold  # holds registers hooks with the ledger; imported when lots are read
    return (select(*COLUMNS, Hold.pending_transfer_id)
            .outerjoin(Hold, Hold.end_transfer_id == Transfer.id))


def book_of(account_id: int) -> LotBook:
    """The lots of one account, from its transfers."""
    book = LotBook(account_id)
    rows = db.session.execute(_rows().where(or_(Transfer.debit_account_id == account_id,
                                                         Transfer.credit_account_id == account_id))
                              .order_by(Transfer.id))
    for row in rows:
        book.apply(row)
    return book


def books_of(account_ids: set[int]) -> dict[int, LotBook]:
    """The lots of several accounts, reading their transfers in one pass (``verify``)."""
    books = {account_id: LotBook(account_id) for account_id in account_ids}
    if not books:
        return books
    ids = sorted(books)
    for start in range(0, len(ids), 500):
        chunk = set(ids[start:start + 500])
        rows = db.session.execute(_rows().where(or_(Transfer.debit_account_id.in_(chunk),
                                                             Transfer.credit_account_id.in_(chunk)))
                                  .order_by(Transfer.id).execution_options(yield_per=5000))
        for row in rows:
            for account_id in (row[4], row[5]):
                if account_id in chunk:
                    books[account_id].apply(row)
    return books


def check_book(book: LotBook, cached_balance: int) -> list[str]:
    """What is wrong with one account's lots: they must add up to its balance, none below zero, a
    deficit only with no lot open, and every lapse within what the household held."""
    problems = list(book.problems)
    name = f"account {book.account_id}"
    if book.held - book.deficit != cached_balance:
        problems.append(f"{name}: lots hold {book.held} with a deficit of {book.deficit}, "
                        f"but the balance is {cached_balance}")
    if any(lot.left < 0 for lot in book.lots.values()):
        problems.append(f"{name}: a lot below zero")
    if book.deficit and book.held:
        problems.append(f"{name}: a deficit of {book.deficit} while lots still hold {book.held}")
    return problems


def lapse(*, account: Account, sink: Account, household_id: int, lot: Lot, reason: str,
          at: datetime | None = None) -> Posted:
    """Post the lapse of what is left of ``lot``: household → the village's sink, code ``expiry``,
    once per household and lot (a retry, or a second run at once, replays it). Guarded like
    spending: it never takes the household below zero. Inside the caller's write transaction,
    which holds the household's account (``awards.expiry`` locks it before reading the lots)."""
    return transfer(debit=account, credit=sink, amount=lot.left, code="expiry",
                    idempotency_key=lapse_key(household_id, lot), reason=reason, at=at)
