"""Verbs of the rule catalogue and the award life cycle.

The package's public verbs in one place, so callers write ``awards.approve(...)``; each
lives in the module of its responsibility:

- ``rules``: the catalogue, rule versions, caps;
- ``lifecycle``: propose, approve, reject, review a batch, object; the review and notice queues;
- ``posting``: post an award through the ledger, post every award whose notice has ended;
- ``corrections``: the committee's reversal of a posted transfer.

Each verb authorises, validates and acts inside one write transaction; the
caller (API resource, web view, CLI) only translates input and output.
"""
from __future__ import annotations

from .corrections import award_transfer, is_reversed, reverse_transfer
from .lifecycle import (MAX_BACKDATE_DAYS, MAX_QUANTITY, STATUS_LABELS, Proposal, ReviewOutcome, approve,
                        in_notice, object_to, propose, propose_batch, readable_award, reject, review_batch,
                        review_queue, status_label, waiting_counts)
from .posting import post_award, post_award_id, post_due, record_award
from .rules import active_rules, check_cap, create_rule, retire_rule, revise_rule

__all__ = [
    "MAX_BACKDATE_DAYS", "MAX_QUANTITY", "STATUS_LABELS", "Proposal", "ReviewOutcome",
    "active_rules", "approve", "award_transfer", "check_cap", "create_rule", "in_notice", "is_reversed",
    "object_to", "post_award", "post_award_id", "post_due", "propose", "propose_batch", "readable_award",
    "record_award", "reject", "retire_rule", "reverse_transfer", "review_batch", "review_queue", "revise_rule",
    "status_label", "waiting_counts",
]
