"""A submission's checks (apps.jobs.lifecycle.validation), called as plain functions: the kind's
defaults, the bounds of max_attempts, and a stable code for each refusal."""

from __future__ import annotations

import pytest

from apps.core.errors import InvalidInput
from apps.jobs import lifecycle
from apps.jobs.registry import registry


def test_job_validate_fills_in_the_kinds_defaults():
    k, priority, max_attempts = lifecycle.job_validate(kind="diagnostics.flaky", payload={"fail_times": 0})

    assert k is registry.get("diagnostics.flaky")
    assert (priority, max_attempts) == ("default", 5)


@pytest.mark.parametrize("max_attempts", [1, 5])
def test_job_validate_accepts_max_attempts_within_the_kinds_bound(max_attempts):
    _, _, chosen = lifecycle.job_validate(
        kind="diagnostics.flaky", payload={"fail_times": 0}, max_attempts=max_attempts
    )

    assert chosen == max_attempts


@pytest.mark.parametrize("max_attempts", [0, -3, 6])
def test_job_validate_refuses_max_attempts_outside_the_kinds_bound(max_attempts):
    with pytest.raises(InvalidInput) as raised:
        lifecycle.job_validate(kind="diagnostics.flaky", payload={"fail_times": 0}, max_attempts=max_attempts)

    assert raised.value.code == "invalid_max_attempts"
    assert "between 1 and 5" in raised.value.message


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"kind": "no.such.kind", "payload": {}}, "unknown_kind"),
        ({"kind": "diagnostics.noop", "payload": []}, "invalid_payload"),
        ({"kind": "diagnostics.sleep", "payload": {"seconds": float("inf")}}, "invalid_payload"),
        ({"kind": "diagnostics.noop", "payload": {}, "priority": "urgent"}, "invalid_priority"),
    ],
)
def test_job_validate_refuses_a_bad_submission_with_a_stable_code(arguments, code):
    with pytest.raises(InvalidInput) as raised:
        lifecycle.job_validate(**arguments)

    assert raised.value.code == code
    assert raised.value.status_code == 400
