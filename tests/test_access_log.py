"""Payment and card tokens never reach gunicorn's access log (issue 10): the request line and the
Referer of a URL that carries one are written with ``***`` in its place, by the logger class that
``gunicorn.conf.py`` gives every ``gunicorn wsgi:app`` started in the project's folder."""
from __future__ import annotations

import time

import uuid

from server_support import Http, gunicorn_server, server_env

from moralbank.edge import mask_tokens

TOKEN = "Xq9_" + uuid.uuid4().hex          # the shape of a code or card token (URL-safe base64)
CODE = "73019468"                          # an 8-digit payment code


def test_every_token_bearing_route_of_the_url_map_is_masked(app):
    """Built from the app's own URL map: each route that takes a code or token, with one in it."""
    from flask import url_for

    with app.test_request_context():
        urls = [url_for("shop.redeem_page", t=TOKEN), url_for("shop.redeem_page", code=CODE),
                url_for("shop.card_page", t=TOKEN), url_for("web.login", next=url_for("shop.redeem_page", t=TOKEN))]
        for rule in app.url_map.iter_rules():
            if "code" in rule.arguments and ("redemption-codes" in rule.rule or rule.rule.startswith("/me/pay")):
                urls.append(url_for(rule.endpoint, code=CODE))
    assert len(urls) == 8, urls
    for url in urls:
        masked = mask_tokens(url)
        assert TOKEN not in masked and CODE not in masked, (url, masked)
        assert "***" in masked


def test_urls_without_tokens_are_left_alone():
    for url in ("/v/BLM", "/api/v1/rankings?village=BLM&period=2026-05", "/api/v1/redemption-codes",
                "/lang/en?next=/home", "/api/v1/stores/1/redemptions?limit=5"):
        assert mask_tokens(url) == url


def test_gunicorn_access_log_masks_tokens_in_the_request_line_and_referer(app, tmp_path):
    """A real gunicorn, started as the README says (``gunicorn wsgi:app`` in the project folder)
    with its access log on: what the log holds after a QR was scanned and a card was opened."""
    access_log = tmp_path / "access.log"
    env = server_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "instance",
                     GUNICORN_CMD_ARGS=f"--access-logfile {access_log}")
    with gunicorn_server(env, log=tmp_path / "gunicorn.log", workers=1) as server:
        http = Http(server.url)
        referer = f"{server.url}/shop/card?t={TOKEN}"
        assert http.get(f"/shop/redeem?t={TOKEN}", headers={"Referer": referer}).status == 302
        http.get(f"/shop/redeem?code={CODE}")
        http.get(f"/me/pay/status/{CODE}", headers={"Referer": f"{server.url}/me/pay"})
        http.get(f"/me/pay/qr/{CODE}.png")
        http.get(f"/api/v1/redemption-codes/{CODE}/qr.png")
        http.get("/v/BLM")
        # gunicorn writes a request's line after it has answered: wait for the last one (a loaded
        # machine may not have written it before the server is stopped)
        deadline = time.monotonic() + 20
        while "GET /v/BLM " not in access_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    text = access_log.read_text()
    assert text.count("\n") >= 6, text
    assert TOKEN not in text and CODE not in text, text
    assert "/shop/redeem?t=*** " in text and "/shop/card?t=***" in text and "/me/pay/status/***" in text
    assert "GET /v/BLM " in text  # the rest of the log is as useful as before
