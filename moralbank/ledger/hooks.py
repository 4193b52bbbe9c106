"""What other domains keep in step with the ledger: registered by them, called by the ledger.

The ledger imports no domain. A domain that keeps a cache built on transfers (the rankings' period
scores) registers here, when its package is imported (``create_app`` imports every domain):

* a **posting hook**, ``fn(transfer, *, debit, credit)``, called by ``ledger.service.transfer`` for
  each transfer it writes, inside the same transaction: the cache commits with the transfer or not
  at all, and a hook that raises refuses the transfer;
* a **verify check**, ``fn(report, accounts)``, called by ``ledger.verify.verify`` after the
  ledger's own checks, to compare that cache with the transfers. ``accounts`` maps every account
  id to ``(kind, household_id)``; the check appends to ``report.discrepancies`` and may count what
  it read in ``report.counts``.

Registering twice is harmless (an app is made per test). A posting hook without its verify check
would make a missing or wrong cache go unnoticed, so a domain registers both together.
"""
from __future__ import annotations

from collections.abc import Callable

_posting_hooks: list[Callable] = []
_verify_checks: list[Callable] = []


def on_posted(fn: Callable) -> Callable:
    """Call ``fn(transfer, *, debit, credit)`` for every transfer the ledger writes (not for a replay)."""
    if fn not in _posting_hooks:
        _posting_hooks.append(fn)
    return fn


def verify_check(fn: Callable) -> Callable:
    """Run ``fn(report, accounts)`` as part of every ``verify()``."""
    if fn not in _verify_checks:
        _verify_checks.append(fn)
    return fn


def posting_hooks() -> tuple[Callable, ...]:
    """The registered posting hooks, in registration order."""
    return tuple(_posting_hooks)


def verify_checks() -> tuple[Callable, ...]:
    """The registered verify checks, in registration order."""
    return tuple(_verify_checks)


def posted(transfer, *, debit, credit) -> None:
    """Run every posting hook for a transfer just written (called by ``ledger.service`` only)."""
    for hook in _posting_hooks:
        hook(transfer, debit=debit, credit=credit)
