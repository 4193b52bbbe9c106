"""HTML pages: thin views over the same services as the API."""
from __future__ import annotations

from flask import Response, render_template, request
from flask.globals import request_ctx
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ..people.auth import record_denial
from ..errors import DomainError
from ..extensions import db


def nav_links() -> list[tuple[str, str]]:
    """The menu of the logged-in user, by role."""
    from flask import url_for
    from flask_babel import gettext as _
    from flask_login import current_user

    if not current_user.is_authenticated:
        return []
    from ..people import access
    from ..people.models import Area

    roles = set(current_user.roles)
    village_id = access.home_village_id(current_user)
    village = db.session.get(Area, village_id) if village_id else None
    links = [(_("首页"), url_for("web.home"))]
    if roles & {"committee", "admin"}:
        links += [(_("审核"), url_for("awards.review")), (_("积分清单"), url_for("awards.rules")),
                  (_("提交积分"), url_for("awards.propose")), (_("操作记录"), url_for("awards.audit_log"))]
    if "grid" in roles:
        links += [(_("我的屯"), url_for("awards.grid_home")), (_("评分表"), url_for("awards.sheet")),
                  (_("提交积分"), url_for("awards.propose"))]
    if "resident" in roles:
        links += [(_("付款码"), url_for("shop.pay")), (_("离线券"), url_for("shop.my_vouchers")),
                  (_("积分记录"), url_for("board.history")),
                  (_("申报好事"), url_for("awards.declare"))]
    if roles & {"committee", "admin", "supervisor"}:
        links += [(_("统计"), url_for("board.dashboard"))]
    if "supervisor" in roles:
        links += [(_("各村概况"), url_for("board.overview"))]
    if roles & {"committee", "admin", "grid"}:
        links += [(_("亲属申报"), url_for("board.kinship_page"))]
    if roles & {"committee", "admin", "supervisor"}:
        links += [(_("廉洁检查"), url_for("board.integrity_page"))]
    if "clerk" in roles:
        links += [(_("收款"), url_for("shop.shop_home")), (_("兑换记录"), url_for("shop.history")),
                  (_("库存"), url_for("shop.shop_items")), (_("离线收款"), url_for("shop.offline_page"))]
    if roles & {"committee", "admin"}:
        links += [(_("商店"), url_for("shop.committee_stores")), (_("本村设置"), url_for("awards.village_settings"))]
    if village is not None:
        links.append((_("积分榜"), url_for("board.public_board", code=village.code)))
        links.append((_("公示"), url_for("awards.notices", code=village.code)))
    seen, unique = set(), []
    for label, url in links:
        if url not in seen:
            seen.add(url)
            unique.append((label, url))
    return unique


def error_page(status: int, message: str | None = None):
    """The error page in the user's language, with a way back (the page they came from, if it is
    on this site, and 首页); ``message`` says what went wrong when there is more to say."""
    from flask_babel import gettext as _

    from .forms import safe_next
    titles = {400: _("请求有误"), 403: _("没有权限"), 404: _("找不到这个页面"), 405: _("不能这样打开这个页面"),
              409: _("操作没有成功"), 422: _("填写的内容有误"), 429: _("操作太频繁"), 500: _("服务器出错了")}
    defaults = {400: _("页面发来的内容不完整或已过期，请返回重新操作。"),
                403: _("您的账号不能打开这个页面。"),
                404: _("地址可能输错了，或者这条记录已经不在了。"),
                405: _("请从页面上的按钮进入。"),
                429: _("操作太频繁，请稍后再试"),
                500: _("请稍后再试；如果一直这样，请告诉村里的管理员。")}
    referrer = request.referrer or ""
    back = None
    if referrer.startswith(request.host_url):
        back = safe_next("/" + referrer[len(request.host_url):])
        if back in (request.full_path, request.path):
            back = None
    return render_template("error.html", status=status, title=titles.get(status, _("操作没有成功")),
                           message=message or defaults.get(status), back=back), status


def init_app(app) -> None:
    from ..api import errors as api_errors
    from . import awards, board, shop, views
    # Modules that add routes to the awards, board and shop blueprints: imported before registering them.
    from . import committee, dashboards, meetings, offline, proposals, resident, sheet, store_admin  # noqa: F401
    from . import integrity  # noqa: F401

    app.register_blueprint(views.bp)
    app.register_blueprint(board.bp)
    app.register_blueprint(awards.bp)
    app.register_blueprint(shop.bp)

    @app.after_request
    def _security_headers(response):
        # Nothing is loaded from other hosts; no inline scripts; the pages are not framed.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.path.startswith("/api/") or response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # The words for codes (moralbank.labels), for every template.
    from .. import labels
    app.add_template_filter(labels.audit_action, "audit_action")
    app.add_template_filter(labels.audit_detail, "audit_detail")
    app.add_template_filter(lambda code: labels.label(labels.CATEGORIES, code), "category_label")
    app.add_template_filter(lambda code: labels.label(labels.TRANSFER_CODES, code), "transfer_label")
    app.add_template_global(labels.AUDIT_FILTERS, "audit_filters")

    @app.context_processor
    def _navigation():
        return {"nav_links": nav_links(), "large_text": views.large_text()}

    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        if error.status == 403:
            record_denial(error.code)
        if api_errors.is_api_request():
            return api_errors.domain_error(error)
        return error_page(error.status, error.message)

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError):
        if api_errors.is_api_request():
            return api_errors.validation_error(error)
        return error_page(422)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if error.code == 403:
            record_denial(error.__class__.__name__)
        if api_errors.is_api_request():
            return api_errors.http_error(error)
        if request_ctx.url_adapter is None:
            # The request never got as far as routing (a Host not in TRUSTED_HOSTS): no page to draw.
            return Response(f"{error.code} {error.name}\n", status=error.code, mimetype="text/plain")
        # Werkzeug's and Flask-WTF's descriptions are English: the page says it in the user's words.
        from flask_babel import gettext as _
        from flask_wtf.csrf import CSRFError
        message = _("页面已过期，请返回刷新后再试。") if isinstance(error, CSRFError) else None
        response = error.get_response()
        page, status = error_page(error.code, message)
        page = Response(page, status=status, mimetype="text/html")
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):  # 405 and 429 keep theirs
            if header in response.headers:
                page.headers[header] = response.headers[header]
        return page

    @app.errorhandler(Exception)
    def _unhandled(error: Exception):
        if isinstance(error, HTTPException):
            return _http(error)
        app.logger.exception("unhandled error on %s", request.path)
        # A failed statement leaves PostgreSQL's transaction aborted: roll back, or drawing the error
        # page (which reads the user for the menu) fails too.
        db.session.rollback()
        if api_errors.is_api_request():
            return api_errors.server_error(error)
        return error_page(500)
