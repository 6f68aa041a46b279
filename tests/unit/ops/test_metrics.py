"""/metrics as a hostile client sees it: no request can add a series or forge a label. A made-up
method counts as OTHER, a path that matches no route as "unmatched", the label separator
cannot split a value, and the bearer token is compared without a 500 whatever it holds."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.core.redis import redis_client
from apps.ops.metrics import PREFIX, count_request

HISTOGRAM = f"{PREFIX}h:http_request"


def request_series() -> set[tuple[str, str, str]]:
    """The (method, route, status) label sets of the request histogram in Redis."""
    fields = redis_client().hkeys(HISTOGRAM)
    return {tuple(f.decode().split("|")[:-1]) for f in fields}  # type: ignore[misc]


def scraped_series(client: Any) -> set[tuple[str, str, str]]:
    body = client.get("/metrics").content.decode()
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"])
        for family in text_string_to_metric_families(body)
        if family.name == "http_request_duration_seconds"
        for s in family.samples
        if s.name.endswith("_count")
    }


@pytest.fixture
def clean_histogram() -> None:
    redis_client().delete(HISTOGRAM)


@pytest.mark.parametrize("method", ["A|B", "GET|X|Y", "FOO", "PROPFIND", "G\u00e9T"])
def test_a_made_up_method_counts_as_other_and_forges_nothing(client, db, clean_histogram, method):
    client.generic(method, "/api/v1/jobs")

    series = request_series()
    assert all(len(labels) == 3 for labels in series), series
    assert {labels[0] for labels in series} == {"OTHER"}
    assert {labels[1] for labels in series} == {"api/v1/jobs"}


def test_random_methods_add_one_series_between_them(client, db, clean_histogram):
    for _ in range(100):
        client.generic(secrets.token_hex(4).upper(), "/api/v1/jobs")

    assert len(request_series()) == 1


def test_a_path_that_matches_no_route_is_counted_under_a_fixed_label(client, db, clean_histogram):
    for n in range(20):
        client.get(f"/api/v1/nothing-here-{n}|500")

    assert request_series() == {("GET", "unmatched", "404")}


def test_a_separator_in_a_label_value_cannot_split_it(client, db, clean_histogram):
    count_request("GET", "api/v1/jobs|x", 200, 0.01)

    assert scraped_series(client) == {("GET", "api/v1/jobs_x", "200")}


def test_a_field_forged_before_the_fix_is_not_scraped(client, db, clean_histogram):
    redis_client().hincrby(HISTOGRAM, "A|B|api/v1/jobs|405|count", 1)
    count_request("GET", "api/v1/jobs", 200, 0.01)

    assert scraped_series(client) == {("GET", "api/v1/jobs", "200")}


def test_known_methods_keep_their_names(client, db, clean_histogram):
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        client.generic(method, "/api/v1/kinds")

    assert {labels[0] for labels in request_series()} == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


@pytest.mark.parametrize("token", ["sch\u00f6n", "\u2603" * 8, "scrape-m\u00e9", "\x80\xff"])
def test_a_non_ascii_metrics_token_answers_401(client, db, settings, token):
    settings.METRICS_TOKEN = "scrape-me"

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_the_right_metrics_token_still_opens_metrics(client, db, settings):
    settings.METRICS_TOKEN = "scrape-me"

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
