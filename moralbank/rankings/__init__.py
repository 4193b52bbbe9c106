"""Period scores, stars and rankings.

Importing the package registers the period scores with the ledger (``ledger.hooks``): the posting
hook that keeps them in the posting transaction and the verify check that compares them with the
transfers. ``create_app`` imports it, so no app posts a transfer without them.
"""
from ..ledger import hooks as _ledger_hooks
from . import scores as _scores

_ledger_hooks.on_posted(_scores.apply_transfer)
_ledger_hooks.verify_check(_scores.verify_scores)
