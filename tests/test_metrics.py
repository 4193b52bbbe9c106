"""Prometheus metrics at /metrics: not public (a bearer token, or loopback only), per-route request
counts and latency by endpoint name (never the raw path), transfers posted by code, redemptions
refused by reason, awards waiting (read at scrape), and the last `flask ledger verify`."""
from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from moralbank.awards.models import Award
from moralbank.extensions import db

API = "/api/v1"
OUTSIDE = {"REMOTE_ADDR": "203.0.113.7"}


def scrape(client, **kwargs) -> dict[tuple, float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_for_loopback_only_without_a_token(client):
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base=OUTSIDE).status_code == 404


@pytest.mark.parametrize("app_config", [{"METRICS_TOKEN": "scrape-token-0123456789abcdef"}])
def test_metrics_with_a_token_need_it_from_anywhere(client):
    assert client.get("/metrics").status_code == 404  # loopback too: the token is required
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    good = {"Authorization": "Bearer scrape-token-0123456789abcdef"}
    assert client.get("/metrics", headers=good, environ_base=OUTSIDE).status_code == 200


def test_requests_are_counted_by_endpoint_with_a_latency_histogram(client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/v/BLM").status_code == 200
    assert client.get("/no/such/page/13800000003").status_code == 404
    after = scrape(client)
    name = "moralbank_http_requests_total"
    assert value(after, name, endpoint="board.public_board", method="GET", status="200") - \
        value(before, name, endpoint="board.public_board", method="GET", status="200") == 3
    assert value(after, name, endpoint="none", method="GET", status="404") - \
        value(before, name, endpoint="none", method="GET", status="404") == 1
    histogram = "moralbank_http_request_duration_seconds_count"
    assert value(after, histogram, endpoint="board.public_board") - value(before, histogram,
                                                                          endpoint="board.public_board") == 3
    text = client.get("/metrics").get_data(as_text=True)
    assert "/v/BLM" not in text and "13800000003" not in text  # endpoint names, not paths
    assert 'le="0.1"' in text


def test_transfers_posted_and_redemptions_refused_are_counted(client, api):
    before = scrape(client)
    clerk = api.get(f"{API}/me", "clerk").get_json()
    store = clerk["store"]["id"]
    code = api.post(f"{API}/redemption-codes", "resident").get_json()
    assert api.post(f"{API}/stores/{store}/redemptions", "clerk",
                    json={"code": code["code"], "points": 1}).status_code == 201
    # the same code again, a code that does not exist, and more points than the household has
    assert api.post(f"{API}/stores/{store}/redemptions", "clerk",
                    json={"code": code["code"], "points": 1}).status_code == 409
    assert api.post(f"{API}/stores/{store}/redemptions", "clerk",
                    json={"code": "00000000", "points": 1}).status_code == 404
    fresh = api.post(f"{API}/redemption-codes", "resident").get_json()
    assert api.post(f"{API}/stores/{store}/redemptions", "clerk",
                    json={"code": fresh["code"], "points": 999}).status_code == 422
    after = scrape(client)
    assert value(after, "moralbank_transfers_posted_total", code="redemption") - \
        value(before, "moralbank_transfers_posted_total", code="redemption") == 1
    for reason in ("code_used", "unknown_code", "insufficient_points"):
        assert value(after, "moralbank_redemptions_refused_total", reason=reason) - \
            value(before, "moralbank_redemptions_refused_total", reason=reason) == 1, reason


def test_a_rolled_back_transfer_is_not_counted(app, client):
    from moralbank.database import write_transaction
    from moralbank.ledger import service as ledger
    from moralbank.people.models import Household

    before = scrape(client)
    with app.app_context():
        household = db.session.scalars(select(Household).limit(1)).one()
        with pytest.raises(RuntimeError):
            with write_transaction():
                ledger.transfer(debit=ledger.village_account(household.village_id, "issuance"),
                                credit=ledger.household_account(household.id), amount=5, code="adjustment",
                                reason="rolled back", idempotency_key="metrics-rollback")
                raise RuntimeError("changed my mind")
        db.session.remove()
    after = scrape(client)
    assert value(after, "moralbank_transfers_posted_total", code="adjustment") == \
        value(before, "moralbank_transfers_posted_total", code="adjustment")


def test_awards_waiting_are_read_at_scrape(app, client, api):
    import uuid
    rule = api.post("/api/v1/villages/BLM/rules", "committee",
                    json={"category": "volunteer", "title": "扫雪", "points": 3, "cap": None,
                          "photo_required": False}).get_json()
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    for _ in range(2):
        response = api.post(f"{API}/awards", "committee", json={"household_id": household, "rule_id": rule["id"]},
                            key=uuid.uuid4().hex)
        assert response.status_code == 201, response.get_json()
    with app.app_context():
        counts = dict(db.session.execute(select(Award.status, func.count()).group_by(Award.status)).all())
        db.session.remove()
    samples = scrape(client)
    for status in ("proposed", "approved", "disputed"):
        assert value(samples, "moralbank_awards_waiting", status=status) == counts.get(status, 0)
    assert sum(counts.get(s, 0) for s in ("proposed", "approved", "disputed")) > 0  # the demo has some


def test_the_last_ledger_verify_is_reported(app, client):
    assert "moralbank_ledger_verify_last_ok" not in re.sub(r"#.*\n", "", client.get("/metrics").get_data(as_text=True))
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    samples = scrape(client)
    assert value(samples, "moralbank_ledger_verify_last_ok") == 1
    import time
    assert abs(value(samples, "moralbank_ledger_verify_last_run_timestamp_seconds") - time.time()) < 120
