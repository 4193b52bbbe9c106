"""Stores, items, redemptions and settlement."""
