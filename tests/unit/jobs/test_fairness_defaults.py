"""Fairness defaults (issue 14, item 7): a client's quota sits well below a queue's depth, and
who may ask for `high` priority is a setting (staff by default), answered 403 otherwise."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.jobs.models import Job
from apps.jobs.registry import registry
from tests.factories import UserFactory
from tests.helpers.api import client_for

JOBS = "/api/v1/jobs"
BATCH = "/api/v1/jobs/batch"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _high_for_staff_only(settings):
    """The deployment these tests describe has narrowed `high` to staff (the default is every
    client, as the API contract allows)."""
    settings.HIGH_PRIORITY_CLIENTS = []


def noop(**extra):
    return {"kind": "diagnostics.noop", "payload": {}, **extra}


def test_the_defaults_keep_a_clients_quota_well_below_a_queues_depth():
    """Read in a fresh process whose environment sets none of them, as a new deployment would."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CLIENT_MAX_IN_FLIGHT", "QUEUE_MAX_DEPTH", "HIGH_PRIORITY_CLIENTS")
    }
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.CLIENT_MAX_IN_FLIGHT, s.QUEUE_MAX_DEPTH, s.HIGH_PRIORITY_CLIENTS]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    in_flight, depth, high = json.loads(out.stdout.strip().splitlines()[-1])

    assert (in_flight, depth) == (125_000, 1_000_000)
    assert in_flight * 8 <= depth  # eight clients at their quota still leave the queue open
    assert high == ["*"]  # every client, as the API contract allows; operators narrow it


def test_a_client_without_the_right_asking_for_high_gets_403(api):
    response = api.post(JOBS, noop(priority="high"), format="json")

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "priority_not_allowed"
    assert "high priority" in error["message"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("priority", ["default", "low"])
def test_any_client_may_ask_for_default_or_low(api, priority, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(JOBS, noop(priority=priority), format="json").status_code == 202


def test_staff_may_ask_for_high(db, django_capture_on_commit_callbacks):
    api = client_for(UserFactory(is_staff=True))

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(JOBS, noop(priority="high"), format="json")

    assert response.status_code == 202
    assert Job.objects.get().queue == "high"


@pytest.mark.parametrize("allowed", [["someone-else", "{name}"], ["*"]])
def test_the_setting_names_who_else_may(settings, db, allowed, django_capture_on_commit_callbacks):
    user = UserFactory()
    settings.HIGH_PRIORITY_CLIENTS = [a.format(name=user.username) for a in allowed]

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(user).post(JOBS, noop(priority="high"), format="json")

    assert response.status_code == 202


def test_a_client_not_named_is_still_refused(settings, api):
    settings.HIGH_PRIORITY_CLIENTS = ["someone-else"]

    assert api.post(JOBS, noop(priority="high"), format="json").status_code == 403


def test_a_batch_asking_for_high_is_refused_whole_naming_the_job(api):
    response = api.post(BATCH, {"jobs": [noop(), noop(priority="high")]}, format="json")

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "priority_not_allowed"
    assert error["details"]["index"] == 1
    assert not Job.objects.exists()


def test_an_idempotent_submission_asking_for_high_is_refused(api):
    response = api.post(JOBS, noop(priority="high"), format="json", HTTP_IDEMPOTENCY_KEY="k-high")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "priority_not_allowed"


def test_a_kind_whose_own_default_is_high_runs_high_for_anyone(api, monkeypatch, django_capture_on_commit_callbacks):
    kind = registry.get("diagnostics.noop")
    monkeypatch.setitem(registry._kinds, kind.name, dataclasses.replace(kind, priority="high"))

    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(JOBS, noop(), format="json").status_code == 202
        # Spelling out the kind's own default asks for nothing more.
        assert api.post(JOBS, noop(priority="high"), format="json").status_code == 202

    assert set(Job.objects.values_list("queue", flat=True)) == {"high"}
