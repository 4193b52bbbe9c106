"""Versioned static URLs: ``url_for('static', filename='css/app.css')`` is
``/static/css/app.css?v=<first 12 hex of the file's SHA-256>``, so a changed file gets a new URL.

The proxy (``deploy/nginx/moralbank.conf``) serves ``/static/`` itself and lets browsers keep a
versioned URL for a year (``immutable``); a deploy that changes a file changes its URL, so nobody
keeps the old one. Without a proxy, Flask serves them the same way (a year for a URL whose ``v``
is the file's current hash, the usual revalidation otherwise).
"""
from __future__ import annotations

import hashlib
import os

from flask import request

#: a year, in seconds: what a versioned URL may be cached for
VERSIONED_MAX_AGE = 365 * 24 * 3600


def init_app(app) -> None:
    versions: dict[str, tuple[float, str]] = {}

    def version(filename: str) -> str | None:
        path = os.path.join(app.static_folder, filename)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        known = versions.get(filename)
        if known is None or known[0] != mtime:
            with open(path, "rb") as handle:
                known = (mtime, hashlib.sha256(handle.read()).hexdigest()[:12])
            versions[filename] = known
        return known[1]

    @app.url_defaults
    def _versioned(endpoint, values):
        if endpoint == "static" and "v" not in values and values.get("filename"):
            digest = version(values["filename"])
            if digest:
                values["v"] = digest

    original = app.get_send_file_max_age

    def max_age(filename):
        if filename and request.args.get("v") and request.args.get("v") == version(filename):
            return VERSIONED_MAX_AGE
        return original(filename)

    app.get_send_file_max_age = max_age
