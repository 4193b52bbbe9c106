"""The committee's to-do on its 首页: what waits for it, each a count and a link (awards to review,
objections, notices ending today or tomorrow, months not yet settled with a store, last month's
红榜 not yet published). Each count comes from the domain that owns it; this only lays them out."""
from __future__ import annotations

from flask import url_for
from flask_babel import gettext as _

from .. import periods
from ..awards import service as awards
from ..people.models import Area
from ..rankings import service as rankings
from ..stores import service as stores


#: unsettled months listed one by one on the to-do (the rest: behind the 商店 page)
SHOWN = 6


def committee_todo(village: Area) -> list[dict]:
    """Rows ``{key, label, count, url}`` in the order a committee works through them; a row with
    count 0 is still listed (shown quietly), so the page always says what was checked."""
    waiting = awards.waiting_counts(village)
    last = periods.last_month()
    rows = [
        {"key": "proposed", "label": _("待审核的积分"), "count": waiting["proposed"],
         "url": url_for("awards.review")},
        {"key": "disputed", "label": _("有异议的积分"), "count": waiting["disputed"],
         "url": url_for("awards.review")},
        {"key": "ending", "label": _("今明两天公示结束"), "count": waiting["ending"],
         "url": url_for("awards.notices", code=village.code)},
    ]
    # the month just ended first: the one a committee settles now; older ones follow, a few at most
    unsettled = sorted(stores.unsettled_months(village), key=lambda row: row[1], reverse=True)
    rows.append({"key": "unsettled", "label": _("未结算的月份"), "count": len(unsettled),
                 "url": url_for("shop.committee_stores"),
                 "items": [{"label": _("%(store)s · %(period)s · %(n)s 分", store=store.name,
                                       period=periods.label(month), n=points),
                            "url": url_for("shop.statement", store_id=store.id, period=month)}
                           for store, month, points in unsettled[:SHOWN]]})
    unpublished = (rankings.ranked_count(village, last) > 0
                   and rankings.published(village, last) is None)
    rows.append({"key": "unpublished", "label": _("%(period)s 红榜未发布", period=periods.label(last)),
                 "count": int(unpublished),
                 "url": url_for("board.dashboard", village=village.code, publish=last) + "#publish"})
    return rows
