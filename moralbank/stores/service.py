"""Verbs of stores: items and stock, payment codes, redemptions, statements, settlements, cards.

The package's public verbs in one place, so callers write ``stores.redeem(...)``; each
lives in the module of its responsibility:

- ``catalogue``: stores, items, stock;
- ``codes``: payment codes, paper cards and their PIN unlock;
- ``redemptions``: preview, redeem, the balance a receipt shows;
- ``settlements``: a month's statement and its settlement (the settled-month lock: ``settled``).
"""
from __future__ import annotations

from .catalogue import add_item, clerk_store, create_store, is_clerk_of, update_item, village_stores
from .codes import (CARD_CODE_TTL, CARD_PIN_LIMIT, CODE_DIGITS, CodeExpired, CodeReplaced, CodeUsed,
                    IssuedCode, UnknownCode,
                    card_for_token, code_state, code_token, drawable_code, find_code, household_code, issue_card,
                    issue_code, latest_open_code, paid_since, revoke_card, unlock_card)
from .models import CodeState
from .redemptions import (MAX_REDEMPTION, Found, OutOfStock, Preview, balance_after, balance_of, find_for_redemption,
                          preview, redeem,
                          redeem_with_code)
from .settlements import Statement, settle, settlement_refusal, statement, unsettled_months

__all__ = [
    "CARD_CODE_TTL", "CARD_PIN_LIMIT", "CODE_DIGITS", "MAX_REDEMPTION",
    "CodeExpired", "CodeReplaced", "CodeState", "CodeUsed", "IssuedCode", "OutOfStock", "Preview", "Statement",
    "UnknownCode", "Found", "add_item", "balance_after", "balance_of", "find_for_redemption", "card_for_token",
    "clerk_store", "code_state", "code_token",
    "create_store", "drawable_code", "find_code", "household_code", "is_clerk_of", "issue_card", "issue_code",
    "latest_open_code", "paid_since", "preview", "redeem", "redeem_with_code", "revoke_card", "settle",
    "settlement_refusal", "statement", "unlock_card", "unsettled_months", "update_item", "village_stores",
]
