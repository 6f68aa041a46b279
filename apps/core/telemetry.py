"""OpenTelemetry tracing, off unless configured (docs/operations.md, "Tracing").

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set and
`OTEL_SDK_DISABLED` is not `true`. Off, this module imports nothing from OpenTelemetry and
installs nothing: each hook the platform calls (`trace_headers`, `outgoing_headers`) is one
test of a module-level flag.

On, `configure(role)` runs once per process, after any fork (gunicorn's worker, a Celery
pool child): a TracerProvider whose Resource names the service (`OTEL_SERVICE_NAME`, else
jobplatform-<role>), a BatchSpanProcessor with the OTLP/HTTP exporter (which reads the
standard OTEL_EXPORTER_OTLP_* variables itself), and the maintained instrumentation of Django
(web only), Celery, psycopg and Redis. `shutdown()` flushes what is still batched; every
process that configures calls it on its way out.

The publish path builds kombu messages itself (apps.jobs.publish), so Celery's own
before_task_publish hook never sees them: `trace_headers` gives each message the W3C
`traceparent` of the request or attempt that publishes it, which the Celery instrumentation
extracts in the worker (it reads task.request.traceparent) as the attempt span's parent. A job
held in PostgreSQL (a paused queue, a full window, a later run_at, a retry) is published later
by beat's dispatcher or another request: the submitting request's context is kept in Redis
under its request id (a day), and such a publish takes it from there.

The entry points call `configure` (config/wsgi.py, config/webserver.py, config/celery.py);
an app that has more to say on its spans asks for a hook with `when_enabled` (apps.jobs.tracing
labels the request and attempt spans with their job), run only once tracing is on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

logger = logging.getLogger("apps.core.telemetry")

ROLES = ("web", "worker", "beat")
# How long a request's trace context is kept for its jobs that are published later.
CONTEXT_TTL_SECONDS = 24 * 3600
_RECALLED_MAX = 4096  # request ids whose context this process remembers
# Requests left untraced by default (a regular expression searched in each request's URL).
PROBE_URLS = r"/(healthz|readyz|metrics)/?(\?|$)"

_NONE: Mapping[str, str] = MappingProxyType({})
_enabled = False
_provider: Any = None
_lock = threading.Lock()
_recalled: dict[str, Mapping[str, str]] = {}
_hooks: list[Callable[[], None]] = []


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing (the OpenTelemetry SDK's own variables)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    return bool(endpoint.strip())


def enabled() -> bool:
    return _enabled


def configure(role: str) -> bool:
    """Install tracing in this process when the environment asks for it; True when on.
    Idempotent: call it in every process, after any fork."""
    global _enabled, _provider
    if _enabled:
        return True
    if role not in ROLES:
        raise ValueError(f"unknown process role {role!r}; expected one of {', '.join(ROLES)}")
    if not wanted():
        return False
    with _lock:
        if _enabled:
            return True
        _provider = _install(role)
        _enabled = True
        hooks = list(_hooks)
    for hook in hooks:
        hook()
    logger.info("tracing on: %s exports spans over OTLP/HTTP", _provider.resource.attributes.get("service.name"))
    return True


def when_enabled(hook: Callable[[], None]) -> None:
    """Run `hook` once tracing is on in this process: now if it is, else when `configure`
    turns it on (an app's ready() may run before or after the entry point configures)."""
    with _lock:
        if not _enabled:
            _hooks.append(hook)
            return
    hook()


def _install(role: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {SERVICE_NAME: f"jobplatform-{role}"})
    # OTEL_TRACES_SAMPLER, when set, is the SDK's to read; otherwise keep every trace that
    # starts at a request or a job and drop the ones background threads would start with a
    # lone database or Redis call (metrics write-behind, lease keeper, dispatcher, kombu).
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else _default_sampler()
    provider = TracerProvider(resource=resource, sampler=sampler)
    # The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout, compression) and
    # the processor OTEL_BSP_* (delay, batch and queue sizes) themselves.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_endpoint())))
    trace.set_tracer_provider(provider)
    if role == "web":
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        # Probes and scrapes (every few seconds, from every balancer and Prometheus) make no
        # traces, unless the instrumentation's own variables say which URLs to leave out.
        own = os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
        excluded = None if own else PROBE_URLS
        # Adds its middleware to settings.MIDDLEWARE: before the WSGI handler loads it.
        DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=excluded)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, enable_commenter=False)
    _trace_prepared_statements(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    return provider


def _trace_prepared_statements(provider: Any) -> None:
    """apps.core.db.prepared_cursor, which runs the hot paths' statements (the token lookup,
    the submit, the claim, the finish), builds Django's ServerBindingCursor on the raw psycopg
    connection itself; psycopg's instrumentation, which works through the connection's
    cursor_factory, never sees those. With tracing on, that class becomes the instrumentation's
    traced subclass of it. Not where Django's own connections already use it
    (OPTIONS server_side_binding): they are traced through their cursor_factory, once."""
    from django.conf import settings
    from django.db.backends.postgresql import base

    cursor_class = getattr(base, "ServerBindingCursor", None)
    options = [db.get("OPTIONS", {}) for db in settings.DATABASES.values()]
    if cursor_class is None or any(o.get("server_side_binding") for o in options):
        return
    # The instrumentation's own factory (private, hence the pinned version) for its classes.
    from opentelemetry.instrumentation.psycopg import _new_cursor_factory

    base.ServerBindingCursor = _new_cursor_factory(base_factory=cursor_class, tracer_provider=provider)


def _traces_endpoint() -> str | None:
    """Where spans go, as the exporter would choose (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which
    it reads itself: None; else /v1/traces under OTEL_EXPORTER_OTLP_ENDPOINT), except that an
    empty traces variable (an .env line left blank) is not taken for the URL."""
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return None
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip().rstrip("/") + "/v1/traces"


def _default_sampler() -> Any:
    from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class NoLoneClientCalls(Sampler):
        """A root span that is a client call (a query, a Redis command) belongs to no request
        or job: a background thread's. Everything else is kept."""

        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):  # type: ignore[no-untyped-def]
            decision = Decision.DROP if kind is SpanKind.CLIENT else Decision.RECORD_AND_SAMPLE
            return SamplingResult(decision, attributes if decision is Decision.RECORD_AND_SAMPLE else None)

        def get_description(self) -> str:
            return "NoLoneClientCalls"

    return ParentBased(root=NoLoneClientCalls())


def shutdown() -> None:
    """Export what is still batched and stop (a process on its way out)."""
    global _enabled
    provider = _provider
    if provider is None or not _enabled:
        return
    _enabled = False
    try:
        provider.shutdown()
    except Exception:  # an exit must not fail because the collector is away
        logger.warning("tracing: could not flush the last spans", exc_info=True)


# --- hooks the platform calls; each is one flag test while tracing is off -------------------


def trace_headers(request_id: str = "") -> Mapping[str, str]:
    """The W3C trace headers for a job's message (apps.jobs.publish): the publishing request's
    or attempt's context, else the context its request left (a held job the dispatcher sends
    later), else none."""
    if not _enabled:
        return _NONE
    try:
        return _message_context(request_id)
    except Exception:  # a message without a trace beats a job left unpublished
        logger.warning("tracing: no trace context for request %s's jobs", request_id, exc_info=True)
        return _NONE


def outgoing_headers() -> Mapping[str, str]:
    """The W3C trace headers for an outbound HTTP call (a webhook POST), from the current span."""
    if not _enabled:
        return _NONE
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _message_context(request_id: str) -> Mapping[str, str]:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    from apps.core import context

    span = trace.get_current_span()
    traced = getattr(span, "kind", None) is SpanKind.SERVER or bool(context.job_id.get())
    if not (traced and span.get_span_context().is_valid):
        return _recall(request_id) if request_id else _NONE
    # Published by the request that submitted it, or by an attempt of the same request's
    # jobs (a webhook delivery, a workflow's next job): a child of what is running now.
    # Published by another request (a resume, a redrive): the job stays in its own trace.
    own = not request_id or request_id == context.request_id.get()
    if not own:
        recalled = _recall(request_id)
        if recalled:
            return recalled
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if own and request_id and carrier:
        remember_request_context(request_id, carrier)
    return carrier


def _context_key(request_id: str) -> str:
    from apps.core.redis import key

    return key(f"trace:{request_id}")


def remember_request_context(request_id: str, carrier: Mapping[str, str]) -> None:
    """Keep the request's context for its jobs the dispatcher publishes later. The first
    context a request id gets stays (SET NX): the request's, not a later attempt's."""
    if _recalled.get(request_id) == carrier:
        return  # this process kept it already
    try:
        from apps.core.redis import redis_client

        kept = redis_client().set(_context_key(request_id), json.dumps(dict(carrier)), nx=True, ex=CONTEXT_TTL_SECONDS)
    except Exception as exc:  # tracing never stands in a publish's way
        logger.debug("tracing: could not keep the context of request %s: %s", request_id, exc)
        return
    if kept:
        _keep(request_id, carrier)


def _recall(request_id: str) -> Mapping[str, str]:
    known = _recalled.get(request_id)
    if known is not None:
        return known
    try:
        from apps.core.redis import redis_client

        raw = redis_client().get(_context_key(request_id))
        value = json.loads(raw) if raw else None
    except Exception as exc:
        logger.debug("tracing: could not read the context of request %s: %s", request_id, exc)
        return _NONE
    if not isinstance(value, dict):
        return _NONE  # not remembered (a request from before tracing was on): asked again next time
    carrier = {str(k): str(v) for k, v in value.items()}
    _keep(request_id, carrier)
    return carrier


def _keep(request_id: str, carrier: Mapping[str, str]) -> None:
    if len(_recalled) >= _RECALLED_MAX:
        _recalled.clear()
    _recalled[request_id] = carrier
