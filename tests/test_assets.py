"""Versioned static URLs: every ``url_for('static', …)`` carries ``?v=`` and the first 12 hex digits of
the file's SHA-256, so a changed file gets a new URL. nginx serves them in production
(tests/test_deploy_nginx.py); without it, Flask lets browsers keep a current versioned URL for a year."""
from __future__ import annotations

import hashlib
import re

from server_support import ROOT


def test_static_urls_carry_the_files_hash_and_are_cached_for_a_year(client):
    page = client.get("/login").get_data(as_text=True)
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert urls
    for url in urls:
        path, version = url.split("?v=")
        assert version == hashlib.sha256((ROOT / path.lstrip("/")).read_bytes()).hexdigest()[:12]
        response = client.get(url)
        assert response.status_code == 200
        assert response.cache_control.max_age == 365 * 24 * 3600
        response.close()
    stale = client.get(urls[0].split("?v=")[0] + "?v=000000000000")  # an old version: not kept a year
    assert stale.status_code == 200 and stale.cache_control.max_age != 365 * 24 * 3600
    stale.close()
