"""Login, logout, the home page of each role, and the language switch."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length


from ..extensions import db
from ..i18n import N_
from ..people import access
from ..errors import Invalid
from ..people.auth import authenticate, change_password, log_out, set_text_size
from ..rankings.households import household_page
from ..stores.models import Store
from .forms import safe_next
from .text_size import TEXT_SIZE_COOKIE, TEXT_SIZES, large_text  # noqa: F401

bp = Blueprint("web", __name__)


class LoginForm(FlaskForm):
    phone = StringField("phone", validators=[DataRequired(message=N_("请输入手机号")), Length(max=20)])
    password = PasswordField("password", validators=[DataRequired(message=N_("请输入密码")), Length(max=256)])




@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; wrong passwords are throttled in ``authenticate`` (moralbank.throttle)."""
    if current_user.is_authenticated:
        return redirect(url_for("web.home"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = authenticate(form.phone.data, form.password.data)
        if user is not None:
            # A fresh session (no fixation), keeping only the language the visitor chose.
            language = session.get("lang")
            session.clear()
            if language:
                session["lang"] = language
            login_user(user)
            return redirect(safe_next(request.args.get("next")) or url_for("web.home"))
        flash(_("手机号或密码不对"), "error")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    log_out(current_user._get_current_object())
    logout_user()
    session.clear()
    flash(_("已退出"), "info")
    return redirect(url_for("web.login"))


class PasswordForm(FlaskForm):
    current_password = PasswordField("current_password", validators=[DataRequired(message=N_("请输入原密码")),
                                                                     Length(max=256)])
    new_password = PasswordField("new_password", validators=[DataRequired(message=N_("请输入新密码")),
                                                             Length(max=256)])
    confirm = PasswordField("confirm", validators=[DataRequired(message=N_("请再输入一次新密码")),
                                                   EqualTo("new_password", message=N_("两次输入的新密码不一样"))])


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password():
    """Change one's own password. Every other session and API token of the account ends; this
    device stays logged in with a fresh session. Guesses of the current password count with the
    account's failed logins (moralbank.throttle)."""
    form = PasswordForm()
    status = 200
    if form.validate_on_submit():
        user = current_user._get_current_object()
        try:
            change_password(user, form.current_password.data, form.new_password.data)
        except Invalid as error:
            for name, messages in error.fields.items():
                getattr(form, name).errors = list(messages)
            status = 422
        else:
            language = session.get("lang")
            session.clear()
            if language:
                session["lang"] = language
            login_user(user)
            flash(_("密码已修改。其他手机和电脑上的登录已退出。"), "info")
            return redirect(url_for("web.home"))
    elif request.method == "POST":
        status = 422
    return render_template("password.html", form=form), status


@bp.get("/lang/<code>")
def set_language(code):
    if code in current_app.config["LANGUAGES"]:
        session["lang"] = code  # the choice sticks in the session cookie; nothing is written
    return redirect(safe_next(request.args.get("next")) or url_for("web.home"))


@bp.post("/settings/text")
def text_size():
    """The 大字 switch (works without JavaScript): kept in a cookie for a year, and on the account
    of a logged-in user so it follows them to another phone."""
    size = request.form.get("size")
    if size not in TEXT_SIZES:
        raise Invalid(_("字号只能是大字或正常"), fields={"size": [_("字号只能是大字或正常")]})
    if current_user.is_authenticated:
        set_text_size(current_user._get_current_object(), size)
    response = redirect(safe_next(request.args.get("next")) or url_for("web.index"))
    response.set_cookie(TEXT_SIZE_COOKIE, size, max_age=365 * 24 * 3600, httponly=True, samesite="Lax",
                        secure=request.is_secure)
    return response


@bp.get("/")
def index():
    if current_user.is_authenticated:
        return redirect(url_for("web.home"))
    return redirect(url_for("web.login"))


@bp.get("/home")
@login_required
def home():
    """The landing page of each role: its job first. The committee's to-do (``web.todo``); the
    grid manager's inspection sheet and the clerk's 收款 are pages of their own, so 首页 sends
    them there; a resident sees the household, a supervisor the villages."""
    user = current_user
    roles = set(user.roles)
    committee = access.committee_village(user) if roles & {"committee", "admin"} else None
    if committee is None and "grid" in roles:
        return redirect(url_for("awards.sheet"))
    if committee is None and "clerk" in roles and access.clerk_store_id(user):
        return redirect(url_for("shop.shop_home"))
    household = access.own_household(user)
    context: dict = {"roles": user.roles}
    if committee is not None:
        from .todo import committee_todo
        context["todo"] = committee_todo(committee)
    if household is not None:
        from .resident import resident_home_context
        context.update(resident_home_context(household))
    store_id = access.clerk_store_id(user)
    if store_id:
        context["store"] = db.session.get(Store, store_id)
    staff_villages = access.villages_visible(user)
    if staff_villages:
        context["villages"] = []
        for village in staff_villages[:20]:
            items, _cursor = household_page(village, hamlet_ids=access.hamlet_scope(user, village), limit=200)
            context["villages"].append({"village": village, "households": items})
    return render_template("home.html", **context)
