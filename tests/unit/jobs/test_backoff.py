"""The backoff arithmetic (apps.jobs.lifecycle.backoff): between half a step and a step, growing
with each attempt, capped and jittered."""

from __future__ import annotations

import random

import pytest

from apps.jobs import lifecycle


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_backoff_stays_between_half_a_step_and_a_step(attempt):
    base, cap = 2.0, 1000.0
    step = min(cap, base * 2 ** (attempt - 1))

    delays = [lifecycle.backoff_seconds(attempt, base=base, cap=cap, rng=random.Random(seed)) for seed in range(50)]

    assert all(step / 2 <= d <= step for d in delays)


def test_backoff_grows_with_each_attempt():
    rng = random.Random(7)

    delays = [lifecycle.backoff_seconds(a, base=1.0, cap=10_000.0, rng=rng) for a in range(1, 10)]

    assert delays == sorted(delays)
    assert delays[-1] > 100 * delays[0] / 2


def test_backoff_is_capped():
    delays = [lifecycle.backoff_seconds(a, base=1.0, cap=30.0, rng=random.Random(a)) for a in range(6, 60)]

    assert all(15.0 <= d <= 30.0 for d in delays)


def test_backoff_is_jittered():
    delays = {lifecycle.backoff_seconds(3, base=1.0, cap=60.0, rng=random.Random(seed)) for seed in range(10)}

    assert len(delays) == 10
