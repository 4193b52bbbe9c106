"""The public board's version per village: the ETag of the board page and the public ranking.

Every posting that changes a score bumps it in the posting's own transaction (the rankings'
ledger hook, ``scores.apply_transfer``), and so does publishing a ranking; a phone that reloads
the board sends the ETag back and gets a 304 after one indexed read, without a ranking query.
"""
from __future__ import annotations

import zlib

from functools import lru_cache

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..database import read_alone
from ..extensions import db
from .models import BoardVersion


@lru_cache(maxsize=2)
def _statements(dialect: str) -> dict:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = BoardVersion.__table__
    bump = insert(table).values(village_id=bindparam("village"), version=1)
    return {
        "bump": bump.on_conflict_do_update(index_elements=[table.c.village_id],
                                           set_={"version": table.c.version + 1}),
        "read": select(table.c.version).where(table.c.village_id == bindparam("village")),
    }


def bump(village_id: int) -> None:
    """Inside a write transaction: the village's board has changed. Once per village and
    transaction (a batch of postings bumps it once; a reader sees the batch only once committed)."""
    session = db.session()
    transaction = (session.get_nested_transaction() or session.get_transaction())
    owner, bumped = session.info.get("board_bumped", (None, None))
    if owner is not transaction or bumped is None:
        bumped = set()
        session.info["board_bumped"] = (transaction, bumped)
    if village_id in bumped:
        return
    connection = session.connection()
    connection.execute(_statements(connection.dialect.name)["bump"], {"village": village_id})
    bumped.add(village_id)


def version(village_id: int) -> int:
    """The village's board version (0 before its first posting): one statement, and on SQLite not
    even a BEGIN when it is the request's first (``read_alone``)."""
    connection = read_alone()
    return connection.execute(_statements(connection.dialect.name)["read"], {"village": village_id}).scalar() or 0


@lru_cache(maxsize=2)
def _state_query(with_notices: bool):
    """The village by code with its board version (and the number of awards in public notice)."""
    from ..awards.models import Award, AwardStatus
    from ..database import UTCDateTime
    from ..people.models import Area

    columns = [Area, BoardVersion.version]
    if with_notices:
        columns.append(select(func.count(Award.id)).where(
            Award.village_id == Area.id,
            ((Award.status == AwardStatus.APPROVED) & (Award.notice_ends_at > bindparam("now", type_=UTCDateTime())))
            | (Award.status == AwardStatus.DISPUTED)).scalar_subquery())
    return (select(*columns).outerjoin(BoardVersion, BoardVersion.village_id == Area.id)
            .where(Area.code == bindparam("code"), Area.level == "village"))


def board_state(code: str, *, notices: bool = False):
    """(village, board version, awards in notice or None) in one statement — all a conditional GET
    of the board reads. On SQLite it runs, as do the board's reads after it, without a BEGIN:
    a public page needs no snapshot shared by its few reads. NotFound for an unknown code."""
    from flask_babel import gettext as _

    from ..database import utcnow
    from ..errors import NotFound

    read_alone()
    params = {"code": (code or "").strip().upper()[:32]}
    if notices:
        params["now"] = utcnow()
    row = db.session.execute(_state_query(notices), params).first()
    if row is None:
        raise NotFound(_("没有代码为 %(code)s 的村", code=code))
    return row[0], row[1] or 0, (row[2] if notices else None)


def board_etag(village, version: int, *parts) -> str:
    """The ETag of a village's board or ranking: its version, the settings shown with it (stars),
    and what else the caller names (the month, the language, the notices)."""
    # crc32, not hash(): str hashes differ between processes, and every worker must agree on a tag
    settings = zlib.crc32(repr((village.name, tuple(village.star_thresholds or ()), village.veto_hides_ranking,
                                village.veto_period)).encode())
    return "-".join(str(part) for part in ("b", village.id, version, settings, *parts))
