"""The request throttle: requests per client over a sliding minute, one small Redis round
trip per request whatever the rate, and a Retry-After that is long enough."""

from __future__ import annotations

import uuid

import pytest

from apps.core.throttling import ClientRateThrottle


@pytest.fixture
def throttle(settings):
    settings.API_THROTTLE_RATE = "10/min"
    t = ClientRateThrottle()
    t.key = f"test-{uuid.uuid4().hex}"
    return t


def allowed(throttle: ClientRateThrottle, now: float) -> bool:
    return throttle._allow(throttle.key, now)


def test_a_client_gets_its_rate_in_a_window_and_a_retry_after_past_it(throttle):
    start = 6000.0  # the start of a minute
    assert all(allowed(throttle, start + i) for i in range(10))
    assert not allowed(throttle, start + 10)
    # 11 counted in this window (refusals count too): no room until it has ended and its
    # share of the next one has faded to 9 (50 s + 60 * 2/11 s).
    wait = throttle.wait()
    assert wait == 61
    assert allowed(throttle, start + 10 + wait)


def test_the_last_window_weighs_by_how_much_of_it_still_overlaps(throttle):
    start = 6000.0
    for i in range(10):
        assert allowed(throttle, start + i)
    # 15 s into the next minute, three quarters of the last one's 10 still count: 7.5.
    assert allowed(throttle, start + 75)  # 7.5 + 1
    assert allowed(throttle, start + 75)  # 7.5 + 2
    assert not allowed(throttle, start + 75)  # 7.5 + 3 > 10
    wait = throttle.wait()
    assert allowed(throttle, start + 75 + wait)
    # Two minutes on, nothing of either counts.
    assert all(allowed(throttle, start + 180 + i / 10) for i in range(10))


def test_the_stored_state_stays_small_whatever_the_rate(throttle, settings):
    from apps.core.redis import redis_client

    settings.API_THROTTLE_RATE = "100000/min"
    busy = ClientRateThrottle()
    busy.key = throttle.key
    for i in range(2000):
        assert busy._allow(busy.key, 6000.0 + i / 100)
    keys = list(redis_client().scan_iter(f"jobplatform:throttle:{busy.key}:*"))
    assert len(keys) == 1
    assert int(redis_client().get(keys[0])) == 2000
    assert 0 < redis_client().ttl(keys[0]) <= 121
