"""Tracing (apps.core.telemetry): off unless configured, and what it puts on messages and spans.

Installing tracing patches libraries process-wide, so the on/off configuration is tried in a
child interpreter. The hooks are tried here with an InMemorySpanExporter behind a provider of
the test's own (never the global one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.celery import celery_getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from apps.core import context, telemetry
from apps.jobs import publish, tracing
from tests.factories import JobFactory
from tests.processes import ROOT


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_SERVICE_NAME": "web", "OTEL_TRACES_SAMPLER": "always_on"}, False),
    ],
)
def test_tracing_is_wanted_only_with_an_otlp_endpoint_and_the_sdk_not_disabled(environ, on):
    assert telemetry.wanted(environ) is on


# What a child interpreter reports after loading the WSGI application (as gunicorn's worker
# does) or configuring another role.
_PROBE = """
import json, sys
role = sys.argv[1]
from apps.core import telemetry
if role == "web":
    import config.wsgi
else:
    import django; django.setup()
    telemetry.configure(role)
from django.conf import settings
from opentelemetry import trace
from apps.jobs import publish
report = {
    "on": telemetry.enabled(),
    "modules": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.instrument"))),
    "django_middleware": any("opentelemetry" in m for m in settings.MIDDLEWARE),
    "headers": dict(publish._Messages().build("diagnostics.noop", "j1", "r1")[0]),
}
from django.db.backends.postgresql import base
# apps.core.db.prepared_cursor's class: traced only with tracing on.
report["prepared_traced"] = base.ServerBindingCursor.__name__ != "ServerBindingCursor"
# apps.jobs.tracing's receivers: connected once tracing is on, whether the app loaded before
# configure (a Celery process) or after it (the web process).
from apps.jobs import signals
report["follows_jobs"] = [
    any(r[0][0] == uid for r in signal.receivers)
    for signal, uid in ((signals.jobs_submitted, "telemetry.submitted"), (signals.job_started, "telemetry.started"))
]
if report["on"]:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    report["service"] = trace.get_tracer_provider().resource.attributes["service.name"]
    if role == "web":
        from opentelemetry.instrumentation.django.middleware.otel_middleware import _DjangoMiddleware
        urls = ("http://h/healthz", "http://h/readyz", "http://h/metrics", "http://h/api/v1/jobs")
        report["untraced"] = [u for u in urls if _DjangoMiddleware._excluded_urls.url_disabled(u)]
    report["instrumented"] = [
        i().is_instrumented_by_opentelemetry for i in (CeleryInstrumentor, PsycopgInstrumentor, RedisInstrumentor)
    ]
    telemetry.shutdown()
print("REPORT " + json.dumps(report))
"""


def probe(role: str, **environ: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # Nothing listens there: nothing is exported in the probe's second of life either.
    env.update({"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_BSP_EXPORT_TIMEOUT": "500", **environ})
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, role], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, f"the probe failed:\n{done.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("REPORT "))


def test_off_by_default_nothing_is_installed_imported_or_added_to_messages():
    report = probe("web")
    assert report["on"] is False
    assert report["modules"] == []  # not even imported: no SDK tracing, no instrumentation
    assert report["django_middleware"] is False
    assert report["prepared_traced"] is False
    assert report["follows_jobs"] == [False, False]  # the jobs' signals cost nothing more
    assert not {"traceparent", "tracestate", "baggage"} & set(report["headers"])


def test_disabled_sdk_wins_over_an_endpoint():
    report = probe("web", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_SDK_DISABLED="true")
    assert report["on"] is False
    assert report["modules"] == []


def test_on_the_web_process_traces_django_celery_psycopg_and_redis_as_jobplatform_web():
    report = probe("web", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert report["on"] is True
    assert report["service"] == "jobplatform-web"
    assert report["django_middleware"] is True
    assert report["instrumented"] == [True, True, True]
    assert report["prepared_traced"] is True  # the hot paths' statements too
    assert report["follows_jobs"] == [True, True]
    assert report["untraced"] == ["http://h/healthz", "http://h/readyz", "http://h/metrics"]  # probes


def test_the_instrumentations_own_variable_chooses_the_untraced_urls():
    report = probe("web", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_PYTHON_DJANGO_EXCLUDED_URLS="jobs")
    assert report["untraced"] == ["http://h/api/v1/jobs"]


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_on_a_celery_process_is_named_for_its_role_and_leaves_django_alone(role):
    report = probe(role, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:9/v1/traces")
    assert report["service"] == f"jobplatform-{role}"
    assert report["django_middleware"] is False
    assert report["instrumented"] == [True, True, True]
    assert report["follows_jobs"] == [True, True]


def test_otel_service_name_names_the_service():
    report = probe("worker", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_SERVICE_NAME="jobs-eu-worker")
    assert report["service"] == "jobs-eu-worker"


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="unknown process role"):
        telemetry.configure("flower")


# --- the hooks, against an in-memory exporter ------------------------------------------------


@pytest.fixture
def traced(monkeypatch) -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    """Tracing on for this test's hooks, spans kept in memory by a provider of its own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_enabled", True)
    monkeypatch.setattr(telemetry, "_recalled", {})
    yield provider.get_tracer("tests"), exporter
    provider.shutdown()


def message_headers(request_id: str) -> dict[str, Any]:
    return publish._Messages().build("diagnostics.noop", str(uuid.uuid4()), request_id)[0]


def test_a_message_published_in_a_request_makes_the_attempt_a_child_of_the_request(traced):
    tracer, exporter = traced
    token = context.request_id.set("req-1")
    try:
        with tracer.start_as_current_span("POST api/v1/jobs", kind=SpanKind.SERVER) as request_span:
            headers = message_headers("req-1")
    finally:
        context.request_id.reset(token)
    # The worker: Celery's instrumentation extracts from the task's request, whose attributes
    # are the message's headers, with its own getter.
    parent = propagate.extract(SimpleNamespace(**headers), getter=celery_getter)
    with tracer.start_as_current_span("run/diagnostics.noop", context=parent, kind=SpanKind.CONSUMER):
        pass

    request, attempt = sorted(exporter.get_finished_spans(), key=lambda s: s.kind is SpanKind.CONSUMER)
    assert request.context.span_id == request_span.get_span_context().span_id
    assert attempt.parent.span_id == request.context.span_id
    assert attempt.context.trace_id == request.context.trace_id


def test_a_job_held_back_and_published_outside_any_request_joins_its_requests_trace(traced, db):
    tracer, _ = traced
    job = JobFactory(request_id=f"req-{uuid.uuid4().hex}")
    token = context.request_id.set(job.request_id)
    try:
        with tracer.start_as_current_span("POST api/v1/jobs", kind=SpanKind.SERVER) as request_span:
            tracing._on_submitted(jobs=[job])  # the commit of a submission whose job is held
    finally:
        context.request_id.reset(token)
    telemetry._recalled.clear()  # another process: only Redis knows

    headers = message_headers(job.request_id)  # the dispatcher's publish, no span current

    parent = trace.get_current_span(propagate.extract(SimpleNamespace(**headers), getter=celery_getter))
    assert parent.get_span_context().trace_id == request_span.get_span_context().trace_id
    assert parent.get_span_context().span_id == request_span.get_span_context().span_id


def test_a_job_published_by_another_request_stays_in_the_trace_that_submitted_it(traced, db):
    tracer, _ = traced
    job = JobFactory(request_id=f"req-{uuid.uuid4().hex}")
    with tracer.start_as_current_span("submit", kind=SpanKind.SERVER) as submit_span:
        token = context.request_id.set(job.request_id)
        tracing._on_submitted(jobs=[job])
        context.request_id.reset(token)
    telemetry._recalled.clear()
    with tracer.start_as_current_span("resume", kind=SpanKind.SERVER):
        token = context.request_id.set("req-resume")
        headers = message_headers(job.request_id)
        context.request_id.reset(token)
    assert format(submit_span.get_span_context().trace_id, "032x") in headers["traceparent"]


def test_the_request_span_names_the_job_it_submitted_and_an_attempt_span_is_not_relabelled(traced, db):
    tracer, exporter = traced
    job, delivery = JobFactory(), JobFactory(kind="webhooks.deliver")
    with tracer.start_as_current_span("POST api/v1/jobs", kind=SpanKind.SERVER):
        tracing._on_submitted(jobs=[job])
    with tracer.start_as_current_span("run/diagnostics.noop", kind=SpanKind.CONSUMER):
        tracing._on_submitted(jobs=[delivery])  # a webhook delivery submitted by an attempt

    request, attempt = sorted(exporter.get_finished_spans(), key=lambda s: s.kind is SpanKind.CONSUMER)
    assert (request.attributes["job.id"], request.attributes["job.kind"]) == (str(job.id), "diagnostics.noop")
    assert "job.id" not in attempt.attributes


def test_the_attempt_span_carries_the_jobs_id_kind_and_attempt(traced, db, django_assert_num_queries):
    tracer, exporter = traced
    job = JobFactory(attempts=2)
    # The claim's signal carries the attempt's number: no query.
    with tracer.start_as_current_span("run/diagnostics.noop", kind=SpanKind.CONSUMER), django_assert_num_queries(0):
        tracing._on_started(job_id=str(job.id), kind=job.kind, attempt=job.attempts)

    [span] = exporter.get_finished_spans()
    assert dict(span.attributes) == {"job.id": str(job.id), "job.kind": "diagnostics.noop", "job.attempt": 2}


def test_an_outgoing_call_carries_the_current_span(traced):
    tracer, _ = traced
    with tracer.start_as_current_span("run/webhooks.deliver", kind=SpanKind.CONSUMER) as span:
        headers = telemetry.outgoing_headers()
    ids = span.get_span_context()
    assert headers["traceparent"].startswith(f"00-{ids.trace_id:032x}-{ids.span_id:016x}-")


def test_off_the_hooks_add_nothing_even_inside_a_span():
    tracer = TracerProvider().get_tracer("tests")
    assert telemetry.enabled() is False
    with tracer.start_as_current_span("POST api/v1/jobs", kind=SpanKind.SERVER):
        assert telemetry.trace_headers("req-1") == {}
        assert telemetry.outgoing_headers() == {}
        assert "traceparent" not in message_headers("req-1")


def test_the_default_sampler_drops_only_lone_client_calls():
    from opentelemetry.sdk.trace.sampling import Decision

    sampler = telemetry._default_sampler()
    tracer = TracerProvider().get_tracer("tests")

    def decision(kind: SpanKind, parent: Any = None) -> Decision:
        return sampler.should_sample(parent, 1, "span", kind).decision

    # A query or Redis command from a background thread (lease keeper, metrics, dispatcher).
    assert decision(SpanKind.CLIENT) is Decision.DROP
    for kind in (SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER, SpanKind.INTERNAL):
        assert decision(kind) is Decision.RECORD_AND_SAMPLE
    with tracer.start_as_current_span("POST api/v1/jobs", kind=SpanKind.SERVER) as request:
        parent = trace.set_span_in_context(request)
    assert decision(SpanKind.CLIENT, parent) is Decision.RECORD_AND_SAMPLE  # the request's query


def test_a_batchs_request_span_counts_its_jobs_and_names_the_first_hundred(traced, db, monkeypatch):
    tracer, exporter = traced
    monkeypatch.setattr(tracing, "IDS_MAX", 2)
    jobs = JobFactory.create_batch(3)
    with tracer.start_as_current_span("POST api/v1/jobs/batch", kind=SpanKind.SERVER):
        tracing._on_submitted(jobs=jobs)

    [span] = exporter.get_finished_spans()
    assert span.attributes["job.count"] == 3
    assert list(span.attributes["job.ids"]) == [str(job.id) for job in jobs[:2]]


def test_a_failure_inside_tracing_never_fails_the_submission_or_the_attempt(traced, monkeypatch, caplog):
    tracer, _ = traced

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("tracing broke")

    monkeypatch.setattr(tracing, "_label_request", broken)
    monkeypatch.setattr(tracing, "_label_attempt", broken)
    with tracer.start_as_current_span("POST api/v1/jobs", kind=SpanKind.SERVER):
        tracing._on_submitted(jobs=[SimpleNamespace(id="j", kind="k", request_id="r")])
        tracing._on_started(job_id="j", kind="k", attempt=1)
    assert [r.getMessage() for r in caplog.records] == [
        "tracing: could not label the request with its jobs",
        "tracing: could not label job j's attempt",
    ]


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
        # A blank line from .env.example must not become the exporter's URL.
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""},
            "http://c:4318/v1/traces",
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/spans"}, "http://t:4318/spans"),
    ],
)
def test_the_exporter_sends_to_the_traces_endpoint_or_under_the_base_one(monkeypatch, environ, endpoint):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert OTLPSpanExporter(endpoint=telemetry._traces_endpoint())._endpoint == endpoint
