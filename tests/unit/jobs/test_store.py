"""The worker's claim and finish paths run for every job: their query counts are pinned, so
a change that adds a query to them is a decision, not an accident. (Inside a test each
transaction is a savepoint, so SAVEPOINT and RELEASE appear in the counts.)"""

from __future__ import annotations

import pytest

from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt
from tests.factories import UserFactory


@pytest.fixture
def job(db):
    return lifecycle.job_submit(owner=UserFactory(), kind="diagnostics.noop", payload={})


def test_claiming_a_job_costs_one_statement(job, django_assert_num_queries):
    with django_assert_num_queries(1):  # UPDATE ... RETURNING; the attempt's row is written at its end
        claim = lifecycle.job_claim(job_id=str(job.id), worker="w1")
    assert claim is not None
    assert (claim.kind, claim.attempt, claim.payload, claim.worker) == ("diagnostics.noop", 1, {}, "w1")
    assert claim.created_at == job.created_at


def test_a_duplicate_message_costs_one_query(job, django_assert_num_queries):
    lifecycle.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(1):  # an UPDATE that matches nothing
        assert lifecycle.job_claim(job_id=str(job.id), worker="w2") is None


def test_finishing_a_job_costs_one_statement(job, django_assert_num_queries):
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(1):  # WITH (fenced UPDATE of the job) INSERT the attempt
        assert lifecycle.job_succeed(claim=claim, result={"ok": True})
    assert JobAttempt.objects.get(job_id=job.id).outcome == "succeeded"


def test_a_heartbeat_costs_one_update(job, django_assert_num_queries):
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(1):
        assert lifecycle.job_heartbeat(claim=claim)


def test_a_zombie_finish_writes_neither_the_job_nor_an_attempt(job):
    stale = lifecycle.job_claim(job_id=str(job.id), worker="zombie")
    Job.objects.filter(id=job.id).update(status="queued")  # its lease expired and was handed on
    fresh = lifecycle.job_claim(job_id=str(job.id), worker="w2")

    assert lifecycle.job_succeed(claim=stale, result={"from": "zombie"}) is False
    assert not JobAttempt.objects.filter(job_id=job.id).exists()
    assert lifecycle.job_succeed(claim=fresh, result={"from": "w2"}) is True
    job.refresh_from_db()
    assert job.result == {"from": "w2"}
    attempt = JobAttempt.objects.get(job_id=job.id)
    assert (attempt.number, attempt.worker, attempt.outcome) == (2, "w2", "succeeded")


@pytest.mark.django_db(transaction=True)
def test_a_whole_noop_job_costs_two_round_trips_to_postgresql(monkeypatch):
    """From message to result, as the worker runs it: the claim and the finish, nothing else.
    Django's connection health check (a raw `SELECT 1` the query log never sees) would be a
    third; the claim stands in for it. Counted at the driver, below Django."""
    import psycopg
    from django.db import connection

    from config.celery import app
    from workers import tasks  # noqa: F401  (registers one task per kind)
    from workers.runtime import run_job

    job = lifecycle.job_submit(owner=UserFactory(), kind="diagnostics.noop", payload={})
    connection.ensure_connection()
    connection.close_at = None  # as with the default DATABASE_CONN_MAX_AGE (the suite sets 0)
    raw = connection.connection
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counted(cursor, query, *args, **kwargs):
        sent.append(str(query))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    assert run_job(app.tasks["diagnostics.noop"], str(job.id)) == "succeeded"
    monkeypatch.undo()
    assert connection.connection is raw, "the job opened a new connection instead of reusing the process's"
    assert len(sent) == 2, sent
    assert sent[0].lstrip().startswith("UPDATE")
    assert "WITH done AS" in sent[1]
    job.refresh_from_db()
    assert job.status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_the_claim_and_the_finish_become_prepared_statements():
    """PostgreSQL parses and plans them once per connection, not once per job."""
    from django.db import connection

    from config.celery import app
    from workers import tasks  # noqa: F401
    from workers.runtime import run_job

    owner = UserFactory()
    connection.ensure_connection()
    connection.close_at = None
    for _ in range(3):
        job = lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
        assert run_job(app.tasks["diagnostics.noop"], str(job.id)) == "succeeded"
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any(p.lstrip().startswith('UPDATE "jobs_job" SET status') for p in prepared), prepared
    assert any("WITH done AS" in p for p in prepared), prepared


def test_writes_behind_all_arrive_and_stopping_sends_what_still_waits():
    """A worker's pool process sends its counters and doorbells from a background thread:
    none is lost on the way, a faulty one does not stop the ones after it, and a process
    that stops first sends what is still waiting."""
    from apps.core import redis as platform_redis

    key = "tests:write-behind"
    client = platform_redis.redis_client()
    client.delete(key)

    def broken(pipe):
        raise RuntimeError("a bug in one write")

    platform_redis.write_behind_start()
    try:
        for i in range(100):
            if i == 50:
                platform_redis.write(broken)
            with platform_redis.batched_writes():
                platform_redis.write(lambda pipe: pipe.incr(key))
    finally:
        platform_redis.write_behind_stop()
    assert int(client.get(key)) == 100
    # Stopped: writes are sent at once again.
    platform_redis.write(lambda pipe: pipe.incr(key))
    assert int(client.get(key)) == 101


def test_counters_written_behind_are_summed_exactly_and_sent_in_few_commands_without_a_stop():
    """A pool process adds to its counters (metrics, drain counts) in its own memory and
    sends the sums every SUM_SECONDS: every addition arrives, exactly, with the key's expiry,
    and 300 jobs' worth cost a few commands, not 900."""
    from apps.core import redis as platform_redis
    from tests.processes import wait_for

    counts, drained = "tests:sums", "tests:sums:drained"
    client = platform_redis.redis_client()
    client.delete(counts, drained)

    def calls() -> int:
        stats = client.info("commandstats")
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("hincrby", "hincrbyfloat", "incrby"))

    before = calls()
    platform_redis.write_behind_start()
    try:
        for _ in range(300):
            with platform_redis.batched_writes():
                platform_redis.add([(counts, "jobs", 1), (counts, "seconds", 0.25)])
                platform_redis.add([(drained, None, 1)], expire_seconds=30)
        # Sent by the thread on its own, with no stop to push them out.
        wait_for(lambda: client.hget(counts, "jobs") == b"300", timeout=5, what="the summed counter")
    finally:
        platform_redis.write_behind_stop()
    assert float(client.hget(counts, "seconds")) == 75.0
    assert int(client.get(drained)) == 300
    assert 0 < client.ttl(drained) <= 30
    assert calls() - before < 30


def test_counters_outside_a_worker_go_at_once_in_one_round_trip():
    """The web process adds a request's histogram (three fields) in one pipeline, at once."""
    from apps.core import redis as platform_redis

    key = "tests:sums:web"
    client = platform_redis.redis_client()
    client.delete(key)
    platform_redis.add([(key, "a|count", 1), (key, "a|sum", 0.5), (key, "a|count", 1)])
    assert client.hgetall(key) == {b"a|count": b"2", b"a|sum": b"0.5"}


def test_the_workers_broker_channel_keeps_one_redis_client_per_connection_pool(redis_server):
    """kombu would build a new client for every acknowledgement and every event published."""
    from kombu import Connection

    with Connection(redis_server.url, transport="workers.transport:Transport") as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.ping()
        channel._pool = None  # what kombu does when the connection is lost
        with channel.conn_or_acquire() as after:
            assert after is not first
            assert after.connection_pool is channel.pool
            assert after.ping()


@pytest.mark.django_db(transaction=True)
def test_a_submits_statements_are_prepared(api, django_capture_on_commit_callbacks):
    """The token lookup, the insert and the outbox mark: parsed and planned once per
    connection, not once per request."""
    from django.db import connection

    connection.ensure_connection()
    connection.close_at = None
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/v1/jobs", {"kind": "diagnostics.noop", "payload": {}}, format="json")
        assert response.status_code == 202
    job = Job.objects.get(id=response.json()["id"])
    assert job.published_at is not None
    assert job.updated_at is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    for text in ('FROM "authtoken_token" t JOIN', 'INSERT INTO "jobs_job"', 'UPDATE "jobs_job" SET "published_at"'):
        assert any(text in p for p in prepared), (text, prepared)


def test_a_new_job_built_positionally_equals_one_built_by_keywords(db):
    """lifecycle.new_job skips Model.__init__'s keyword handling; the job must be the same."""
    owner = UserFactory()
    values = {"kind": "diagnostics.noop", "payload": {"a": 1}, "queue": "default", "max_attempts": 2}
    fast, slow = lifecycle.new_job(owner, **values), Job(owner=owner, **values)
    for field in Job._meta.concrete_fields:
        if field.has_default() and callable(field.default):  # the id, created_at: fresh per job
            assert getattr(fast, field.attname) is not None, field.name
        else:
            assert getattr(fast, field.attname) == getattr(slow, field.attname), field.name
    assert fast.owner is owner
    assert fast.id != lifecycle.new_job(owner, **values).id  # a fresh id per job, like uuid4's default
    assert fast._state.adding
    with pytest.raises(TypeError):
        lifecycle.new_job(owner, no_such_field=1)
