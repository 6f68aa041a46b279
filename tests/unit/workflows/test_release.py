"""Release rules as plain service calls: what a member's end does to its dependents and to
its workflow, for both failure policies, and a redrive re-opening a failed workflow."""

from __future__ import annotations

import pytest

from apps.core.errors import InvalidInput, TooManyRequests
from apps.deadletters import services as deadletters
from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle
from apps.jobs.models import Job
from apps.workflows import selectors, services
from apps.workflows.models import Workflow
from tests.unit.workflows.helpers import fail, jobs_of, node, refreshed, start, statuses, succeed

pytestmark = pytest.mark.django_db


def diamond(user, **options):
    return start(user, node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c"), **options)


def test_jobs_without_dependencies_are_queued_and_the_others_wait(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        workflow = diamond(user)
    assert statuses(workflow) == {"a": "queued", "b": "waiting", "c": "waiting", "d": "waiting"}
    jobs = jobs_of(workflow)
    assert jobs["a"].published_at is not None
    assert all(jobs[ref].published_at is None for ref in "bcd")  # a waiting job is never on the broker
    assert workflow.status == "running"
    assert workflow.total == 4


def test_a_diamond_releases_each_job_once_its_last_dependency_succeeds(user):
    workflow = diamond(user)
    succeed(workflow, "a")
    assert statuses(workflow) == {"a": "succeeded", "b": "queued", "c": "queued", "d": "waiting"}
    succeed(workflow, "b")
    assert statuses(workflow)["d"] == "waiting"
    succeed(workflow, "c")
    assert statuses(workflow)["d"] == "queued"
    succeed(workflow, "d")
    workflow = refreshed(workflow)
    assert workflow.status == "succeeded"
    assert workflow.finished_at is not None


def test_a_chord_releases_its_last_job_after_the_whole_group(user):
    group = [node(f"g{i}") for i in range(5)]
    workflow = start(user, *group, node("zip", *[g["ref"] for g in group]))
    for i in range(4):
        succeed(workflow, f"g{i}")
        assert statuses(workflow)["zip"] == "waiting"
    succeed(workflow, "g4")
    assert statuses(workflow)["zip"] == "queued"


def test_a_retry_is_invisible_to_the_dependents(user):
    workflow = start(user, node("a"), node("b", "a"))
    assert fail(workflow, "a", permanent=False) == "retrying"
    assert statuses(workflow)["b"] == "waiting"
    assert refreshed(workflow).status == "running"


def test_a_failure_cancels_everything_downstream_and_fails_the_workflow(user):
    workflow = start(user, node("x"), node("y", "x"), node("z", "y"), node("free"))
    assert fail(workflow, "x") == "failed"
    assert statuses(workflow) == {"x": "failed", "y": "cancelled", "z": "cancelled", "free": "queued"}
    z = jobs_of(workflow)["z"]
    assert z.error_type == "DependencyFailed"
    assert "'x' failed" in z.error_message
    assert refreshed(workflow).status == "running"
    succeed(workflow, "free")
    workflow = refreshed(workflow)
    assert workflow.status == "failed"
    assert workflow.unfinished == 0


def test_with_continue_the_dependents_of_a_failed_job_still_run(user):
    workflow = start(user, node("x"), node("y", "x"), on_failure="continue")
    fail(workflow, "x")
    assert statuses(workflow)["y"] == "queued"
    succeed(workflow, "y")
    assert refreshed(workflow).status == "failed"  # a job failed, even if the rest ran


def test_a_cancelled_waiting_job_cancels_its_dependents(user):
    workflow = start(user, node("a"), node("b", "a"), node("c", "b"))
    lifecycle.job_cancel(job=jobs_of(workflow)["b"])
    assert statuses(workflow) == {"a": "queued", "b": "cancelled", "c": "cancelled"}
    succeed(workflow, "a")
    assert refreshed(workflow).status == "cancelled"


def test_redriving_the_failed_member_reopens_the_workflow(user):
    workflow = start(user, node("x"), node("y", "x"), node("z", "y"))
    fail(workflow, "x")
    assert refreshed(workflow).status == "failed"
    letter = DeadLetter.objects.get(job=jobs_of(workflow)["x"], state="open")
    deadletters.dead_letter_redrive(letter_id=letter.pk, actor="admin")
    assert statuses(workflow) == {"x": "queued", "y": "waiting", "z": "waiting"}
    workflow = refreshed(workflow)
    assert workflow.status == "running"
    assert workflow.finished_at is None
    assert jobs_of(workflow)["z"].error_type == ""
    succeed(workflow, "x")
    succeed(workflow, "y")
    succeed(workflow, "z")
    assert refreshed(workflow).status == "succeeded"


def test_a_reopened_job_whose_other_dependency_failed_stays_cancelled(user):
    workflow = start(user, node("p"), node("q"), node("r", "p", "q"))
    fail(workflow, "p")
    fail(workflow, "q")
    assert refreshed(workflow).status == "failed"
    letter = DeadLetter.objects.get(job=jobs_of(workflow)["p"], state="open")
    deadletters.dead_letter_redrive(letter_id=letter.pk, actor="admin")
    assert statuses(workflow) == {"p": "queued", "q": "failed", "r": "cancelled"}
    succeed(workflow, "p")
    assert refreshed(workflow).status == "failed"


def test_cancelling_a_workflow_cancels_what_has_not_finished(user):
    workflow = diamond(user)
    succeed(workflow, "a")
    claim = lifecycle.job_claim(job_id=str(jobs_of(workflow)["b"].id), worker="w1")
    workflow = services.workflow_cancel(workflow=workflow)
    assert statuses(workflow) == {"a": "succeeded", "b": "running", "c": "cancelled", "d": "cancelled"}
    assert jobs_of(workflow)["b"].cancel_requested_at is not None
    assert refreshed(workflow).status == "running"  # until its running job stops
    lifecycle.job_fail_attempt(claim=claim, failure=lifecycle.AttemptFailure("JobCancelled", "stop", cancelled=True))
    assert refreshed(workflow).status == "cancelled"


def test_every_payload_is_checked_and_errors_name_the_ref(user):
    with pytest.raises(InvalidInput) as caught:
        start(
            user, node("a"), node("b", "a", kind="diagnostics.sleep", payload={"seconds": "x"}), node("c", kind="nope")
        )
    assert caught.value.code == "invalid_workflow"
    assert [e["ref"] for e in caught.value.details] == ["b", "c"]
    assert not Workflow.objects.exists()
    assert not Job.objects.exists()


def test_a_refused_admission_writes_nothing(user, settings):
    settings.CLIENT_MAX_IN_FLIGHT = 2
    with pytest.raises(TooManyRequests):
        start(user, node("a"), node("b", "a"), node("c", "b"))
    assert not Workflow.objects.exists()
    assert not Job.objects.exists()


def test_parent_results_are_read_by_ref(user):
    workflow = start(user, node("a"), node("b"), node("sum", "a", "b"))
    succeed(workflow, "a", {"n": 1})
    succeed(workflow, "b", {"n": 2})
    assert selectors.parent_results(job_id=str(jobs_of(workflow)["sum"].id)) == {"a": {"n": 1}, "b": {"n": 2}}
    assert selectors.parent_results(job_id=str(jobs_of(workflow)["a"].id)) == {}


def test_finishing_a_job_outside_a_workflow_costs_no_query_more(user, django_assert_num_queries):
    job = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={})
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(1):  # the one succeed statement
        assert lifecycle.job_succeed(claim=claim, result={})


def test_a_released_job_whose_publish_was_lost_is_published_by_the_relay_and_a_waiting_one_never(user):
    from datetime import timedelta

    from django.utils import timezone

    from apps.jobs.reconciler import jobs_relay_unpublished
    from tests.helpers.jobs import broker_messages

    workflow = start(user, node("a"), node("b", "a"), node("c", "b"))
    succeed(workflow, "a")  # the test's transaction never commits: b's publish after commit is lost
    b = jobs_of(workflow)["b"]
    assert b.status == "queued"
    assert b.published_at is None
    jobs_relay_unpublished(now=timezone.now() + timedelta(minutes=5))
    jobs = jobs_of(workflow)
    assert jobs["b"].published_at is not None
    on_broker = [message["args"][0] for message in broker_messages(jobs["b"].queue)]
    assert str(jobs["b"].id) in on_broker
    assert str(jobs["c"].id) not in on_broker
    assert jobs["c"].published_at is None


def test_metrics_count_workflows_running_and_finished_by_outcome(user, client, django_capture_on_commit_callbacks):
    import re

    def figure(body: str, name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", body, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    before = client.get("/metrics").content.decode()
    workflow = start(user, node("a"))
    running = client.get("/metrics").content.decode()
    assert figure(running, "workflows_running") == figure(before, "workflows_running") + 1
    with django_capture_on_commit_callbacks(execute=True):
        succeed(workflow, "a")
    after = client.get("/metrics").content.decode()
    name = 'workflows_finished_total{status="succeeded"}'
    assert figure(after, name) == figure(before, name) + 1
    assert figure(after, "workflows_running") == figure(before, "workflows_running")


def test_pruning_keeps_the_finished_jobs_of_a_running_workflow_and_drops_old_finished_workflows(user, settings):
    from datetime import timedelta

    from django.utils import timezone

    from apps.jobs.retention import prune
    from apps.workflows.models import WorkflowNode

    running = start(user, node("a"), node("b", "a"))
    succeed(running, "a")
    done = start(user, node("x"))
    succeed(done, "x")
    later = timezone.now() + timedelta(days=settings.JOB_RETENTION_DAYS + 1)
    figures = prune(now=later)
    assert figures["workflows"] == 1
    assert set(jobs_of(running)) == {"a", "b"}  # a's result is still b's to read
    assert not Workflow.objects.filter(pk=done.pk).exists()
    assert not Job.objects.filter(workflow_id=done.id).exists()
    assert not WorkflowNode.objects.filter(workflow_id=done.id).exists()


def test_a_finish_that_never_commits_releases_nothing_and_lease_recovery_runs_the_job_again(user):
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from apps.jobs.reconciler import jobs_expire_leases
    from tests.unit.workflows.helpers import claimed

    workflow = start(user, node("a"), node("b", "a"))
    claim = claimed(workflow, "a")

    class WorkerDied(Exception):
        pass

    seen: dict[str, str] = {}

    def finish_then_die() -> None:
        with transaction.atomic():  # the worker dies before its commit
            assert lifecycle.job_succeed(claim=claim, result={})
            seen.update(statuses(workflow))
            raise WorkerDied

    with pytest.raises(WorkerDied):
        finish_then_die()
    assert seen["b"] == "queued"  # released inside the finishing transaction...
    assert statuses(workflow) == {"a": "running", "b": "waiting"}  # ...and rolled back with it
    assert refreshed(workflow).unfinished == 2
    jobs_expire_leases(now=timezone.now() + timedelta(minutes=5))
    assert statuses(workflow)["a"] == "retrying"
    assert statuses(workflow)["b"] == "waiting"
