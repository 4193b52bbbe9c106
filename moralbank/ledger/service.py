"""The verbs of the ledger: open accounts, transfer, reverse.

Invariants kept here (and checked by ``verify``):

* a transfer moves ``amount > 0`` points between two accounts of one village;
* the cached balances of both accounts change in the same transaction as the
  transfer is written, in ascending account id order (so two transfers never
  wait on each other's locks in opposite orders on PostgreSQL);
* spending (redemption, settlement, expiry) never takes the debited account
  below zero: the check is the WHERE clause of the UPDATE, so it holds under
  any concurrency, on SQLite and PostgreSQL alike;
* the idempotency key is claimed by the INSERT itself (``ON CONFLICT DO
  NOTHING``): the same key with the same transfer replays it, with another
  transfer it is a conflict;
* a transfer is reversed at most once (unique ``reverses_id``), and a
  reversal is never itself reversed;
* an idempotency key is never cut: a key longer than the column is refused, and
  keys derived from a client's key (``request_key``) carry its digest, not a prefix of it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from ..database import require_write_transaction, utcnow
from ..errors import Conflict, DomainError, Invalid, NotFound
from ..extensions import db
from . import hooks
from .models import TRANSFER_CODES, Account, Transfer

#: codes whose debit may not take the debited account below zero
GUARDED_CODES = frozenset({"redemption", "settlement", "expiry", "pending"})

#: the fields that make two requests with one idempotency key "the same transfer"
_FINGERPRINT = ("debit_account_id", "credit_account_id", "amount", "code",
                "award_id", "redemption_id", "settlement_id", "reverses_id")


class InsufficientPoints(DomainError):
    code, status = "insufficient_points", 422


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class AlreadyReversed(Conflict):
    code = "already_reversed"


@dataclass(frozen=True)
class Posted:
    """The result of a transfer request: the transfer, and whether it was a replay."""

    transfer: Transfer
    replayed: bool


# --- accounts -------------------------------------------------------------------------------

def open_village_accounts(village) -> tuple[Account, Account]:
    """Create the issuance account and the deduction sink of a new village."""
    issuance = Account(village_id=village.id, kind="issuance", balance=0)
    sink = Account(village_id=village.id, kind="sink", balance=0)
    db.session.add_all([issuance, sink])
    return issuance, sink


def open_household_account(household) -> Account:
    """Create the account of a new household (balance 0)."""
    account = Account(village_id=household.village_id, kind="household", household_id=household.id, balance=0)
    db.session.add(account)
    return account


def open_store_account(store) -> Account:
    """Create the account of a new store (balance 0)."""
    account = Account(village_id=store.village_id, kind="store", store_id=store.id, balance=0)
    db.session.add(account)
    return account


def household_account(household_id: int) -> Account:
    account = db.session.scalar(select(Account).where(Account.household_id == household_id))
    if account is None:
        raise NotFound(_("这户没有积分账户"))
    return account


def store_account(store_id: int, *, lock: bool = False) -> Account:
    """A store's account; with ``lock``, its row taken FOR UPDATE (PostgreSQL) until the transaction ends."""
    query = select(Account).where(Account.store_id == store_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    account = db.session.scalar(query)
    if account is None:
        raise NotFound(_("这个商店没有积分账户"))
    return account


_ACCOUNT_PAIR: dict = {}


def household_and_village_account(household_id: int, village_id: int, kind: str):
    """A household's account and its village's issuance account or sink, in one query. They come as
    read-only rows (id, village_id, kind, household_id, balance), which is all ``transfer`` needs."""
    assert kind in ("issuance", "sink")
    if not _ACCOUNT_PAIR:
        table = Account.__table__
        _ACCOUNT_PAIR["select"] = select(table.c.id, table.c.village_id, table.c.kind, table.c.household_id,
                                         table.c.balance).where(
            (table.c.household_id == bindparam("household_id"))
            | ((table.c.village_id == bindparam("village_id")) & (table.c.kind == bindparam("kind"))))
    found = db.session.connection().execute(_ACCOUNT_PAIR["select"], {
        "household_id": household_id, "village_id": village_id, "kind": kind}).all()
    household = next((a for a in found if a.household_id == household_id), None)
    system = next((a for a in found if a.kind == kind and a.village_id == village_id), None)
    if household is None or household.village_id != village_id:
        raise NotFound(_("这户没有积分账户"))
    if system is None:
        raise NotFound(_("村的系统账户缺失"))
    return household, system


def village_account(village_id: int, kind: str) -> Account:
    """The issuance account or deduction sink of a village."""
    assert kind in ("issuance", "sink")
    account = db.session.scalar(select(Account).where(Account.village_id == village_id, Account.kind == kind))
    if account is None:
        raise NotFound(_("村的系统账户缺失"))
    return account


# --- transfers ------------------------------------------------------------------------------

#: the stored length of an idempotency key (``transfers.idempotency_key``)
KEY_LENGTH = Transfer.__table__.c.idempotency_key.type.length


def request_key(kind: str, user_id: int, client_key: str) -> str:
    """The ledger key of a client's request: ``kind:user:<SHA-256 of the client's key>``.

    The client's key alone may already fill the column (the edge allows the stored length), so
    ``kind:user:key`` would not fit, and cutting it would make two keys that differ only near
    the end one key: the second request would replay or conflict with the first. The digest is
    a fixed 64 characters, so the derived key always fits whole.
    """
    digest = hashlib.sha256(client_key.encode("utf-8", "surrogatepass")).hexdigest()
    key = f"{kind}:{user_id}:{digest}"
    assert len(key) <= KEY_LENGTH, key
    return key


# The hot path's statements are built once (per dialect) and run on the session's connection
# with parameters: no statement construction, cache-key generation or ORM layer per transfer.
_STATEMENTS: dict[str, dict] = {}


def _statements() -> dict:
    connection = db.session.connection()
    dialect = connection.dialect.name
    if dialect not in _STATEMENTS:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        transfers, accounts = Transfer.__table__, Account.__table__
        credit = (update(accounts).where(accounts.c.id == bindparam("account"))
                  .values(balance=accounts.c.balance + bindparam("delta")).returning(accounts.c.balance))
        _STATEMENTS[dialect] = {
            # Claims the idempotency key (and the reversal link) or does nothing.
            "insert": insert(transfers).on_conflict_do_nothing().returning(transfers.c.id),
            "credit": credit,
            # The overdraft guard is the WHERE clause: no interleaving can spend a point twice.
            "guarded": credit.where(accounts.c.balance + bindparam("delta") >= 0),
        }
    return _STATEMENTS[dialect]


def _insert_ignoring_conflict(values: dict):
    """INSERT a transfer unless its idempotency key (or reversal link) is taken; return the new id or None."""
    return db.session.connection().execute(_statements()["insert"], values).scalar_one_or_none()


def _apply_to_balance(account: Account, delta: int, *, guard: bool) -> int:
    """Add ``delta`` to an account's cached balance; with ``guard``, refuse to go below zero."""
    statement = _statements()["guarded" if guard and delta < 0 else "credit"]
    new_balance = db.session.connection().execute(statement, {"account": account.id,
                                                              "delta": delta}).scalar_one_or_none()
    if new_balance is None:
        raise InsufficientPoints(_("积分不足"))
    # The session's copy of the account, if it holds one (``account`` may be a plain row): keep it current.
    cached = db.session.identity_map.get(db.session.identity_key(Account, account.id))
    if cached is not None:
        set_committed_value(cached, "balance", new_balance)
    return new_balance


def transfer(*, debit: Account, credit: Account, amount: int, code: str, idempotency_key: str,
             actor=None, reason: str | None = None, award_id: int | None = None,
             redemption_id: int | None = None, settlement_id: int | None = None,
             reverses: Transfer | None = None, at: datetime | None = None, unguarded: bool = False) -> Posted:
    """Move ``amount`` points from ``debit`` to ``credit``, once per idempotency key.

    Must run inside ``write_transaction()``; the transfer, both balances and what the posting
    hooks keep in step with it (the household's period scores, see ``hooks``) commit together or
    not at all. ``unguarded`` lifts the overdraft guard for a spend already paid for by a hold
    (``holds.post``: the points were held, then released in the same transaction).
    """
    require_write_transaction()
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise Invalid(_("积分数必须是正整数"), fields={"amount": [_("必须是正整数")]})
    if code not in TRANSFER_CODES:
        raise Invalid(f"unknown transfer code {code!r}")
    if debit.id == credit.id:
        raise Invalid(_("转出和转入不能是同一个账户"))
    if debit.village_id != credit.village_id:
        raise Invalid(_("不能在两个村之间转积分"))
    if not idempotency_key or len(idempotency_key) > KEY_LENGTH:
        raise Invalid(_("缺少幂等键"), fields={"idempotency_key": [_("1 到 128 个字符")]})

    values = {
        "village_id": debit.village_id,
        "debit_account_id": debit.id,
        "credit_account_id": credit.id,
        "amount": amount,
        "code": code,
        "idempotency_key": idempotency_key,
        "award_id": award_id,
        "redemption_id": redemption_id,
        "settlement_id": settlement_id,
        "reverses_id": reverses.id if reverses is not None else None,
        "actor_id": getattr(actor, "id", None),
        "reason": (reason or None) and reason[:255],
        "created_at": at or utcnow(),
    }

    new_id = _insert_ignoring_conflict(values)
    if new_id is None:
        return Posted(_existing(values), replayed=True)

    # Balances in ascending account id order: a fixed lock order on PostgreSQL.
    try:
        for account, delta in sorted(((debit, -amount), (credit, amount)), key=lambda pair: pair[0].id):
            _apply_to_balance(account, delta, guard=(code in GUARDED_CODES and delta < 0 and not unguarded))
    except InsufficientPoints:
        # The transfer row is already written: this transaction must not commit, even if a
        # caller catches the refusal and carries on (write_transaction checks the mark).
        db.session().info["ledger_doomed"] = True
        raise

    # The row just written, as an ORM object without reading it back.
    posted = Transfer(id=new_id, **values)
    make_transient_to_detached(posted)
    db.session.add(posted)
    hooks.posted(posted, debit=debit, credit=credit)
    return Posted(posted, replayed=False)


def _existing(values: dict) -> Transfer:
    """The transfer that already holds this idempotency key, if it is the same; else a conflict."""
    existing = db.session.scalar(select(Transfer).where(
        Transfer.village_id == values["village_id"],
        Transfer.idempotency_key == values["idempotency_key"]))
    if existing is None:
        if values["reverses_id"] is not None:
            raise AlreadyReversed(_("这笔积分已经被冲正过，不能再次冲正"))
        raise Conflict(_("写入冲突，请重试"))  # pragma: no cover - no other unique key on transfers
    if any(getattr(existing, name) != values[name] for name in _FINGERPRINT):
        raise IdempotencyConflict(_("这个幂等键已用于另一笔不同的操作"))
    return existing


def reverse(original: Transfer, *, actor=None, reason: str, idempotency_key: str, prepare=None) -> Posted:
    """Undo a transfer by the opposite transfer, linked to it. A transfer is reversed at most once.

    A reversal is never refused for want of balance: a correction may take a
    household below zero (spending is then blocked until it is positive again).

    A retry under the key of a reversal already written replays it before anything else is
    checked: what may have changed since (the month settled) does not turn a replay into a
    refusal. Otherwise ``prepare(original)`` runs first: the owning domain's checks (it may
    refuse by raising) and effects (they commit with the reversal, or not at all).
    """
    if original.code == "reversal":
        raise Invalid(_("冲正记录本身不能再冲正"), code="not_reversible")
    if not reason or not reason.strip():
        raise Invalid(_("请填写冲正原因"), fields={"reason": [_("必填")]})
    debit = db.session.get(Account, original.credit_account_id)
    credit = db.session.get(Account, original.debit_account_id)
    replayed = _replay_of(original, idempotency_key)
    if replayed is not None:
        return Posted(replayed, replayed=True)
    if prepare is not None:
        prepare(original)
    return transfer(debit=debit, credit=credit, amount=original.amount, code="reversal",
                    idempotency_key=idempotency_key, actor=actor, reason=reason.strip(),
                    award_id=original.award_id, redemption_id=original.redemption_id,
                    settlement_id=original.settlement_id, reverses=original)


def _replay_of(original: Transfer, idempotency_key: str) -> Transfer | None:
    """The reversal of ``original`` already written under this key, if any; another transfer under it is a conflict."""
    existing = db.session.scalar(select(Transfer).where(Transfer.village_id == original.village_id,
                                                        Transfer.idempotency_key == idempotency_key))
    if existing is None:
        return None
    if existing.reverses_id != original.id or existing.code != "reversal":
        raise IdempotencyConflict(_("这个幂等键已用于另一笔不同的操作"))
    return existing
