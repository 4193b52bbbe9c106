"""The append-only audit log of staff writes (who, what, when, from where)."""
