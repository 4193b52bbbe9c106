"""Cursor pagination: the one way a long list is read a page at a time, by the web pages, the API
and the read models alike.

A page is ``limit`` rows ordered by an id column; one row more is fetched to learn whether another
page follows, and the cursor to it is the id of the page's last row. The API answers
``{"items": [...], "next": cursor-or-null}`` (:func:`page_body`); a client passes ``next`` back as
``before=`` (newest first) or ``after=`` (oldest first)."""
from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, NamedTuple

from .extensions import db


class Page(NamedTuple):
    """One page of rows and the cursor to the next page (None on the last page)."""

    items: list
    next: int | None


_by_id = attrgetter("id")


def split_page(rows, limit: int, key: Callable[[Any], int] = _by_id) -> Page:
    """The first ``limit`` of up to ``limit + 1`` ordered ``rows``, and the cursor if there were more."""
    rows = list(rows)
    items = rows[:limit]
    return Page(items, key(items[-1]) if len(rows) > limit and items else None)


def keyset_page(query, column, *, limit: int, cursor: int | None = None, newest_first: bool = True,
                rows: bool = False, key: Callable[[Any], int] = _by_id) -> Page:
    """Run ``query`` (a select) for one page ordered by ``column``: below ``cursor`` when newest
    first, above it otherwise. ``rows=True`` for a select of several columns (``key`` then picks
    the id out of a row); otherwise the select's first entity is returned."""
    if cursor:
        query = query.where(column < cursor if newest_first else column > cursor)
    query = query.order_by(column.desc() if newest_first else column).limit(limit + 1)
    result = db.session.execute(query).all() if rows else db.session.scalars(query).all()
    return split_page(result, limit, key)


def page_body(items: list, cursor: int | None) -> dict:
    """The API's answer for a page: ``{"items": [...], "next": "<cursor>" or null}``."""
    return {"items": items, "next": str(cursor) if cursor else None}
