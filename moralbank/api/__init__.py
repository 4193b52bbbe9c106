"""The JSON API under /api/v1: thin resources over the services.

Authentication is by bearer token only (``POST /api/v1/auth/tokens``), so the
API needs no CSRF token; cookies are ignored here.
"""
from flask import Blueprint

from ..extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

from . import errors, resources, openapi, awards, stores, rankings, meetings, offline  # noqa: E402,F401
from . import integrity  # noqa: E402,F401
