"""Checks a domain above the stores asks for before a household spends (the awards' 一票否决 when
the village blocks a vetoed household's redemptions): registered by that domain, called here, so
the stores import no domain above them (the pattern of ``ledger.hooks``)."""
from __future__ import annotations

from collections.abc import Callable

_spending_checks: list[Callable] = []


def spending_check(fn: Callable) -> Callable:
    """Call ``fn(household)`` before every redemption; it raises a ``DomainError`` to refuse."""
    if fn not in _spending_checks:
        _spending_checks.append(fn)
    return fn


def check_spending(household) -> None:
    """Run every registered spending check (inside the redemption's transaction)."""
    for check in _spending_checks:
        check(household)
