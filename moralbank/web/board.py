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
from ..errors import DomainError
from ..people import access
from ..people.service import village_by_code
from ..rankings import service as rankings
from ..rankings import versions
from ..rankings.models import RankingSnapshot
from .forms import bounded_int

bp = Blueprint("board", __name__)


def _period_choices() -> list[tuple[str, str]]:
    return [(key, periods.label(key)) for key in periods.current().values()]


# --- the public board ------------------------------------------------------------------------

@bp.get("/v/<code>")
def public_board(code):
    """积分榜: ranking by period and hamlet, the red list, notices in progress. No login, names masked.

    A conditional GET: the ETag is the village's board version (bumped by every posting that
    changes a score and by every published ranking) with the notices, month and language, so a
    reload that changed nothing is a 304 after one statement; a proxy may share it for a few
    seconds (not a logged-in view, whose menu is its own)."""
    village, version, notices = versions.board_state(code, notices=True)
    logged_in = current_user.is_authenticated
    public = not logged_in and "lang" not in request.args
    etag = versions.board_etag(village, version, notices, periods.current_month(), get_locale(),
                               f"u{current_user.get_id()}" if logged_in else "all")
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
    published = rankings.snapshots(village, limit=5)
    red_list = rankings.snapshot_entries(published[0])[:10] if published else []
    page = render_template("board/public.html", village=village, lines=lines, period=period, hamlet=hamlet,
                           periods=_period_choices(), published=published, red_list=red_list,
                           red_title=published[0].title if published else None, notices=notices)
    return edge.cache_headers(make_response(page), etag, public=public)


@bp.get("/v/<code>/rankings/<int:snapshot_id>")
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
