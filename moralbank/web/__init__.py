"""HTML pages: thin views over the same services as the API."""
from __future__ import annotations

from flask import render_template, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ..errors import DomainError


def init_app(app) -> None:
    from ..api import errors as api_errors
    from . import views

    app.register_blueprint(views.bp)

    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        if api_errors.is_api_request():
            return api_errors.domain_error(error)
        return render_template("error.html", status=error.status, message=error.message), error.status

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError):
        if api_errors.is_api_request():
            return api_errors.validation_error(error)
        return render_template("error.html", status=422, message=str(error.messages)), 422

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if api_errors.is_api_request():
            return api_errors.http_error(error)
        if error.code == 429:
            from flask_babel import gettext as _
            return render_template("error.html", status=429, message=_("操作太频繁，请稍后再试")), 429
        return render_template("error.html", status=error.code, message=error.description), error.code

    @app.errorhandler(Exception)
    def _unhandled(error: Exception):
        if isinstance(error, HTTPException):
            return _http(error)
        app.logger.exception("unhandled error on %s", request.path)
        if api_errors.is_api_request():
            return api_errors.server_error(error)
        return render_template("error.html", status=500, message=None), 500
