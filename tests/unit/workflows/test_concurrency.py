"""Twenty members of a chord finishing at the same moment, each in its own connection:
the workflow's row lock makes them take turns, so the last job is released exactly once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from apps.jobs import lifecycle
from apps.jobs.models import Job
from apps.workflows import services
from apps.workflows.models import Workflow
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_concurrent_finishes_release_the_chords_last_job_once():
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    user = UserFactory()
    group = [{"ref": f"m{i}", "kind": "diagnostics.noop", "payload": {}} for i in range(20)]
    last = {"ref": "last", "kind": "diagnostics.noop", "payload": {}, "depends_on": [g["ref"] for g in group]}
    workflow = services.workflow_submit(owner=user, jobs=[*group, last])
    claims = [
        lifecycle.job_claim(job_id=str(job_id), worker=f"w{i}")
        for i, job_id in enumerate(
            Job.objects.filter(workflow_id=workflow.id).exclude(workflow_ref="last").values_list("id", flat=True)
        )
    ]
    start = threading.Barrier(len(claims))
    errors: list[BaseException] = []

    def finish(claim: lifecycle.Claim) -> None:
        try:
            start.wait(timeout=10)
            assert lifecycle.job_succeed(claim=claim, result={})
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=finish, args=(claim,)) for claim in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    released = Job.objects.get(workflow_id=workflow.id, workflow_ref="last")
    assert released.status == "queued"
    assert released.workflow_node.remaining == 0  # counted down once per member, no more
    assert Workflow.objects.get(pk=workflow.pk).unfinished == 1
