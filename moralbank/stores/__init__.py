"""Stores, items, redemptions and settlement.

Importing the package registers the stores' check with the ledger (``ledger.hooks``): every
settlement equals its store's net redemptions of its month. ``create_app`` imports it.
"""
from ..ledger import hooks as _ledger_hooks
from . import settled as _settled

_ledger_hooks.verify_check(_settled.verify_settlements)
