"""I/O-bound kinds (issue 18, item 1): declared in @kind, routed to the io_<priority> queues
that worker-io consumes, listed wherever the platform lists queues, and filled by the fair
dispatcher like any other queue."""

from __future__ import annotations

import re
import shlex
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.jobs import dispatch, pauses
from apps.jobs.registry import IO_QUEUES, Kind, registry
from apps.ops.metrics import QUEUES
from apps.webhooks.services import DELIVER_KIND
from tests.factories import JobFactory, UserFactory
from tests.helpers.jobs import broker_messages
from tests.processes import ROOT

SCHEMA = {"type": "object"}


def handler(ctx, payload):
    return None


def procfile(process: str) -> list[str]:
    (line,) = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith(f"{process}:")]
    return shlex.split(re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", line.split(":", 1)[1]))


def option(argv: list[str], name: str) -> str:
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {argv}")


def test_an_io_bound_kind_goes_to_the_io_queue_of_each_priority():
    io = Kind(name="t.io", handler=handler, schema=SCHEMA, io_bound=True)
    cpu = Kind(name="t.cpu", handler=handler, schema=SCHEMA)

    assert [io.queue_for(p) for p in ("high", "default", "low")] == ["io_high", "io_default", "io_low"]
    assert [cpu.queue_for(p) for p in ("high", "default", "low")] == ["high", "default", "low"]
    assert Kind(name="t.own", handler=handler, schema=SCHEMA, io_bound=True, queue="mail").queue_for("low") == "mail"


def test_webhook_delivery_is_io_bound_and_says_so():
    deliver = registry.get(DELIVER_KIND)

    assert deliver.io_bound
    assert deliver.describe()["io_bound"] is True
    assert deliver.describe()["queue"] == "io_high"
    assert registry.get("diagnostics.noop").describe()["io_bound"] is False


def test_the_catalogue_shows_whether_a_kind_is_io_bound(api):
    kinds = {k["name"]: k for k in api.get("/api/v1/kinds").json()["kinds"]}

    assert kinds["diagnostics.sleep"]["io_bound"] is False


def test_every_list_of_queues_names_the_io_queues():
    declared = [q.name for q in settings.CELERY_TASK_QUEUES]

    assert set(IO_QUEUES) <= set(pauses.job_queues())
    assert set(IO_QUEUES) <= set(QUEUES)
    assert set(IO_QUEUES) <= set(declared)


def test_worker_io_is_the_same_worker_on_the_io_queues_with_a_thread_per_slot():
    worker, worker_io = procfile("worker"), procfile("worker-io")

    assert worker_io[:3] == worker[:3] == ["celery", "-A", "config"]
    assert option(worker_io, "-Q") == "io_high,io_default,io_low"  # in priority order
    assert option(worker_io, "-P") == "threads"
    assert option(worker_io, "--concurrency") == "32"  # WORKER_IO_CONCURRENCY's default
    assert option(worker_io, "--prefetch-multiplier") == "1"  # one message per slot
    assert "--without-mingle" in worker_io
    assert "--without-gossip" in worker_io
    # The prefork worker takes the I/O queues only after its own (a stack without worker-io).
    assert option(worker, "-Q").split(",") == ["high", "default", "low", "io_high", "io_default", "io_low"]
    assert settings.CELERY_TASK_ACKS_LATE
    assert settings.CELERY_WORKER_SEND_TASK_EVENTS


def test_the_dispatcher_fills_the_io_queues_from_every_client_in_turn(db):
    big, small = UserFactory(), UserFactory()
    start = timezone.now() - timedelta(minutes=1)
    big_jobs = [
        JobFactory(owner=big, kind=DELIVER_KIND, queue="io_high", created_at=start + timedelta(milliseconds=i))
        for i in range(5)
    ]
    small_job = JobFactory(owner=small, kind=DELIVER_KIND, queue="io_high", created_at=start + timedelta(seconds=1))

    assert dispatch.queue_fill("io_high", room=3).sent == 3

    sent = [m["args"][0] for m in reversed(broker_messages("io_high"))]
    assert sent == [str(big_jobs[0].id), str(small_job.id), str(big_jobs[1].id)]
    assert dispatch.dispatch_pass(full=True) >= 1  # a pass looks at the I/O queues too
    assert str(big_jobs[2].id) in [m["args"][0] for m in broker_messages("io_high")]


@pytest.mark.parametrize("queue", IO_QUEUES)
def test_an_io_queue_can_be_paused(db, queue):
    assert pauses.queue_pause(name=queue, actor="ops").paused
