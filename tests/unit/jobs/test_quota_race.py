"""The in-flight quota under real concurrency: submissions racing from many connections at
once (threads, each with its own database connection, committed data) admit exactly what
the quota leaves room for, whether the client's cached count is cold or warm."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs import flow
from apps.jobs.models import Job
from tests.factories import UserFactory
from tests.helpers.concurrency import race

JOBS = "/api/v1/jobs"


@pytest.fixture
def owner(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # The claim is about concurrent reservations, not about the cache's once-a-second
    # refresh from PostgreSQL: keep the cached count for the whole race, however slow the
    # machine, so that a refresh in the middle cannot make the outcome depend on timing.
    monkeypatch.setattr(flow, "IN_FLIGHT_CACHE_SECONDS", 60)
    user = UserFactory()
    yield user
    flow.redis_client().delete(flow.in_flight_key(user.pk))


def token_of(user: Any) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def codes(responses: list[Any]) -> list[tuple[int, str | None]]:
    return sorted(
        (r.status_code, r.json().get("error", {}).get("code") if r.status_code != 202 else None) for r in responses
    )


@pytest.mark.parametrize("warm", [False, True], ids=["cold-cache", "warm-cache"])
def test_sixteen_concurrent_submits_under_a_quota_of_five_admit_exactly_five(owner, settings, warm):
    settings.CLIENT_MAX_IN_FLIGHT = 5
    if warm:  # one job in already, so the count is cached when the race starts
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_of(owner)}")
        assert client.post(JOBS, {"kind": "diagnostics.noop", "payload": {}}, format="json").status_code == 202

    responses = race(
        16, token_of(owner), lambda c: c.post(JOBS, {"kind": "diagnostics.noop", "payload": {}}, format="json")
    )

    admitted = 4 if warm else 5
    assert codes(responses) == [(202, None)] * admitted + [(429, "too_many_in_flight")] * (16 - admitted)
    assert Job.objects.filter(owner=owner).count() == 5


@pytest.mark.parametrize(("size", "limit"), [(6, 10), (600, 1000)])
def test_four_concurrent_batches_each_over_half_the_quota_admit_one(owner, settings, size, limit):
    settings.CLIENT_MAX_IN_FLIGHT = limit
    batch = {"jobs": [{"kind": "diagnostics.noop", "payload": {}}] * size}

    responses = race(4, token_of(owner), lambda c: c.post(f"{JOBS}/batch", batch, format="json"))

    assert codes(responses) == [(202, None)] + [(429, "too_many_in_flight")] * 3
    assert Job.objects.filter(owner=owner).count() == size
