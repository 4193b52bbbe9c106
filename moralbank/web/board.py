"""The public board (/v/<code>), published rankings and their print view. The resident's pages
(``web.resident``) and the staff dashboards and exports (``web.dashboards``) are routes of this
same blueprint."""
from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_login import current_user
from flask_babel import gettext as _

from .. import edge, periods
from ..awards import service as awards
from ..awards import vetoes
from ..errors import DomainError
from ..people import access
from ..people.service import village_by_code
from ..rankings import service as rankings
from ..rankings import versions
from ..rankings.models import RankingSnapshot
from ..replica import reads_replica
from .forms import bounded_int
from .text_size import large_text

bp = Blueprint("board", __name__)


def period_groups(selected: str | None = None, kinds: tuple[str, ...] = periods.KINDS) -> list[dict]:
    """The choices of the page's period picker (``period_picker`` in macros.html), keeping the
    period the page shows even when it is older than the list."""
    return periods.picker(kinds, keep=selected)


# --- the public board ------------------------------------------------------------------------

@bp.get("/v/<code>")
@reads_replica
def public_board(code):
    """积分榜: ranking by period and hamlet, the red list, notices in progress. No login, names masked.
    ``?print=1`` lays the ranking of the chosen period out for an A4 notice board.

    A conditional GET: the ETag is the village's board version (bumped by every posting that
    changes a score and by every published ranking) with the notices, month and language, so a
    reload that changed nothing is a 304 after one statement; a proxy may share it for a few
    seconds (not a logged-in view, whose menu is its own, nor a 大字 one)."""
    village, version, notices = versions.board_state(code, notices=True)
    logged_in = current_user.is_authenticated
    large = large_text()
    public = not logged_in and not large and "lang" not in request.args
    etag = versions.board_etag(village, version, notices, periods.current_month(), get_locale(),
                               f"u{current_user.get_id()}" if logged_in else "all", "L" if large else "n")
    unchanged = edge.not_modified(etag, public=public)
    if unchanged is not None:
        return unchanged
    period = request.args.get("period") or periods.current_month()
    hamlet = request.args.get("hamlet", type=bounded_int)
    try:
        lines = rankings.ranking(village, period, hamlet_id=hamlet, limit=100)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for("board.public_board", code=village.code))
    choices = period_groups(period)
    if request.args.get("print"):
        return render_template("board/print_board.html", village=village, lines=lines, period=period,
                               hamlet=hamlet, period_label=periods.label(period), periods=choices)
    published = rankings.snapshots(village, limit=5)
    red_list = []
    if published:  # a household vetoed since the ranking was published leaves the red list too
        vetoed = vetoes.vetoed_in(village, published[0].period)
        red_list = [e for e in rankings.snapshot_entries(published[0]) if e.household_id not in vetoed][:10]
    page = render_template("board/public.html", village=village, lines=lines, period=period, hamlet=hamlet,
                           period_label=periods.label(period), last_month=periods.last_month(),
                           periods=choices, published=published, red_list=red_list,
                           red_title=published[0].title if published else None,
                           notices=notices)
    return edge.cache_headers(make_response(page), etag, public=public)


@bp.get("/v/<code>/rankings/<int:snapshot_id>")
@reads_replica
def snapshot_page(code, snapshot_id):
    """A published ranking; ``?print=1`` lays it out for an A4 notice board."""
    village = village_by_code(code)
    snapshot = access.get_or_404(RankingSnapshot, snapshot_id, _("找不到这份排行榜"), village_id=village.id)
    template = "board/print_ranking.html" if request.args.get("print") else "board/snapshot.html"
    return render_template(template, village=village, snapshot=snapshot,
                           entries=rankings.snapshot_entries(snapshot),
                           period_label=periods.label(snapshot.period))


@bp.get("/v/<code>/notices/print")
def notices_print(code):
    """The awards in public notice, laid out for an A4 notice board."""
    from .awards import award_rows
    village = village_by_code(code)
    return render_template("board/print_notices.html", village=village,
                           rows=award_rows(awards.in_notice(village), masked=True))
