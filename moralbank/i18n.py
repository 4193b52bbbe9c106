"""Language: Chinese (zh_CN) first, English complete. ``?lang=en`` switches, and the choice
sticks in the session; without one, a logged-in user's saved ``locale`` applies."""
from __future__ import annotations

from flask import request, session
from flask_login import current_user


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it here (it is translated where shown)."""
    return message


def select_locale() -> str:
    from flask import current_app, has_request_context

    languages = current_app.config["LANGUAGES"]
    if not has_request_context():  # the CLI, cron, a shell: the default language
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    wanted = request.args.get("lang")
    if wanted in languages:
        session["lang"] = wanted
        return wanted
    if session.get("lang") in languages:
        return session["lang"]
    user = current_user if request else None
    if user is not None and getattr(user, "is_authenticated", False) and user.locale in languages:
        return user.locale
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def init_app(app, babel) -> None:
    from pathlib import Path

    translations = str(Path(app.root_path) / "translations")
    babel.init_app(app, locale_selector=select_locale, default_translation_directories=translations)

    register_filters(app)

    @app.context_processor
    def _inject_locale():
        from flask_babel import get_locale
        return {"current_locale": str(get_locale() or "zh_CN")}


def localtime(value, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC datetime shown in the deployment's time zone."""
    if value is None:
        return ""
    from .database import local_zone
    return value.astimezone(local_zone()).strftime(fmt)


def register_filters(app) -> None:
    app.add_template_filter(localtime, "localtime")
