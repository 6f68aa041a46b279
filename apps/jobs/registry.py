"""The kind registry: what a kind is, declared in one place.

A kind module declares its kinds with the `kind` decorator:

    @kind("images.thumbnail", schema={...}, priority="default", max_attempts=5,
          soft_time_limit=60, time_limit=90)
    def thumbnail(ctx: JobContext, payload: dict) -> dict: ...

The modules are named in settings.JOB_KIND_MODULES and imported by `registry.load()` when
Django starts. Both the web process (validation, the catalogue) and the worker (one Celery
task per kind) read the same declarations.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from jsonschema import Draft202012Validator

from apps.jobs.flow import limit_payload_field, parse_rate

PRIORITIES = ("high", "default", "low")
# The queues of the I/O-bound kinds, one per priority, consumed by the `worker-io` process
# (a thread pool of many slots: docs/kinds.md, "I/O-bound kinds").
IO_QUEUES = tuple(f"io_{priority}" for priority in PRIORITIES)
# How long a unique kind's key is held: while the job is active, or for a fixed period.
UNIQUE_WHILE = ("active", "period")


class JobContext(Protocol):
    """What a handler gets besides its payload (implemented by workers.runtime)."""

    job_id: str
    attempt: int
    idempotency_key: str

    def progress(self, percent: float, message: str = "") -> None: ...

    def is_cancelled(self) -> bool: ...

    def check_cancelled(self) -> None: ...

    def log(self, message: str, level: str = "info") -> None:
        """Keep a line with this attempt (level: debug, info, warning, error, critical);
        lines logged with the logging module inside the handler are kept too."""

    def step(self, name: str, effect: Callable[[], Any]) -> Any:
        """Run `effect` at most once per job; a retry gets the recorded result back."""

    @property
    def parent_results(self) -> dict[str, Any]:
        """A workflow job's dependencies' results, by ref ({} outside a workflow)."""


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help (bad input, a refused request)."""


class ClientError(PermanentError):
    """Raised by a handler when the client's input is at fault (an image Pillow cannot read, an
    upload that is gone). Permanent like its parent, and recorded as `ClientError` whatever the
    subclass, so its message reaches the client as written: say what is wrong with the input,
    never an object's repr or a path. Its dead letter counts in the depth but pages nobody by
    itself (the dead-letter monitor): one client's bad files are not an operator's incident."""


# The error_type a ClientError is recorded under (workers.runtime); the monitor reads it.
CLIENT_ERROR_TYPE = "ClientError"


class RetryableError(Exception):
    """Raised by a handler for a transient failure; any other exception is retryable too."""


class JobCancelled(Exception):
    """Raised by `ctx.check_cancelled()` when the client cancelled the running job."""


@dataclass(frozen=True)
class Kind:
    name: str
    handler: Callable[[JobContext, dict[str, Any]], Any]
    schema: dict[str, Any]
    description: str = ""
    priority: str = "default"
    # A dedicated queue keeps long kinds from starving short ones; None means the priority's.
    queue: str | None = None
    max_attempts: int = 3
    retry_base_seconds: float | None = None
    retry_max_seconds: float | None = None
    soft_time_limit: float = 300.0
    time_limit: float = 330.0
    # Protect what a handler calls: at most `concurrency` running at once across all workers,
    # and at most `rate_limit` starts ("10/s", "300/m", "1000/h"). A job over either waits in
    # PostgreSQL, not in a worker's memory.
    rate_limit: str | None = None
    concurrency: int | None = None
    # Key both limits: "owner" (each client its own `concurrency` and `rate_limit`) or
    # "payload.<field>" (a top-level field of the schema: each value its own, a missing one
    # the empty key). Costs the worker one small query per job of the kind, before its claim.
    limit_per: str | None = None
    # Checks at submit what the schema cannot: references to other rows (an upload the owner
    # must own). Called with (owner, payload) after the schema passed; raises InvalidInput.
    # None (most kinds) costs nothing on the submit path.
    check_payload: Callable[[Any, dict[str, Any]], None] | None = field(default=None, repr=False, compare=False)
    # An internal kind is the platform's own (webhook delivery): created by its services,
    # never by a client. The API answers a client's submission of one as of an unknown kind,
    # and the catalogue (GET /api/v1/kinds) leaves it out.
    internal: bool = False
    # Top-level payload keys holding a URL the handler will call: a client's submission is
    # refused at once (400 unsafe_url) when one may not be called (apps.core.urlsafety), the
    # check a callback_url gets, rather than the job failing later in the worker.
    outbound_urls: tuple[str, ...] = ()
    # Unique jobs (apps.jobs.lifecycle.unique, docs/kinds.md): one job per client and value of
    # these top-level payload fields (empty: not unique), held while the job is active
    # (`unique_while="active"`; `unique_for`, optional, caps it in seconds from its creation)
    # or for `unique_for` seconds whatever its state ("period"). `debounce` (True: unique_for
    # seconds, or a number of seconds) holds a new job that long and moves a not yet started
    # one's run_at to now + that long on each duplicate.
    unique_by: tuple[str, ...] = ()
    unique_for: float | None = None
    unique_while: str = "active"
    debounce: bool | float = False
    # An I/O-bound kind mostly waits on the network (webhook delivery, outside HTTP calls): it
    # goes to the io_<priority> queues and runs on worker-io's threads, where Celery cannot
    # interrupt it at its limits: the context enforces the soft one at each check, the lease
    # keeper abandons the attempt at the hard one, and the calls it makes carry timeouts.
    io_bound: bool = False
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.priority not in PRIORITIES:
            raise ValueError(f"kind {self.name}: priority must be one of {PRIORITIES}")
        if self.max_attempts < 1:
            raise ValueError(f"kind {self.name}: max_attempts must be at least 1")
        if self.time_limit <= self.soft_time_limit:
            raise ValueError(f"kind {self.name}: time_limit must exceed soft_time_limit")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"kind {self.name}: concurrency must be at least 1")
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)
        if self.limit_per is not None:
            self._check_limit_per()
        Draft202012Validator.check_schema(self.schema)
        self._check_unique()
        object.__setattr__(self, "validator", Draft202012Validator(self.schema))

    def _check_limit_per(self) -> None:
        try:
            field = limit_payload_field(self.limit_per)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"kind {self.name}: {exc}") from None
        if self.rate_limit is None and self.concurrency is None:
            raise ValueError(f"kind {self.name}: limit_per keys its limits, but it has no rate_limit or concurrency")
        if field is not None and field not in (self.schema.get("properties") or {}):
            raise ValueError(f"kind {self.name}: limit_per names payload field {field!r}, not in the schema properties")

    def _check_unique(self) -> None:
        by = self.unique_by or ()
        object.__setattr__(self, "unique_by", (by,) if isinstance(by, str) else tuple(by))
        unknown = [name for name in self.unique_by if name not in (self.schema.get("properties") or {})]
        if unknown:
            raise ValueError(f"kind {self.name}: unique_by names {unknown}, not in the schema properties")
        if self.unique_while not in UNIQUE_WHILE:
            raise ValueError(f"kind {self.name}: unique_while must be one of {UNIQUE_WHILE}")
        for option, value in (("unique_for", self.unique_for), ("debounce", self.debounce)):
            if (
                not isinstance(value, bool)
                and value is not None
                and not (isinstance(value, int | float) and value >= 1)
            ):
                raise ValueError(f"kind {self.name}: {option} must be a number of seconds, at least 1")
        if not self.unique_by and (self.unique_for is not None or self.debounce or self.unique_while != "active"):
            raise ValueError(f"kind {self.name}: unique_for, unique_while and debounce need unique_by")
        if self.unique_for is None and (self.unique_while == "period" or self.debounce is True):
            raise ValueError(f"kind {self.name}: unique_while='period' and debounce=True need unique_for")

    @property
    def debounce_seconds(self) -> float | None:
        """How long a debounced job waits after its last submission; None when not debounced."""
        if self.debounce is True:
            return self.unique_for
        return float(self.debounce) if self.debounce else None

    def queue_for(self, priority: str) -> str:
        return self.queue or (f"io_{priority}" if self.io_bound else priority)

    def payload_errors(self, payload: Any) -> list[dict[str, str]]:
        """Every way the payload breaks the schema, as {path, message}; empty when valid."""
        errors = sorted(self.validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
        return [{"path": "/".join(str(p) for p in e.absolute_path) or "(root)", "message": e.message} for e in errors]

    def retry_bounds(self) -> tuple[float, float]:
        """(base, cap) of the backoff between attempts: the kind's own, or the settings'."""
        base = self.retry_base_seconds if self.retry_base_seconds is not None else settings.JOB_RETRY_BASE_SECONDS
        cap = self.retry_max_seconds if self.retry_max_seconds is not None else settings.JOB_RETRY_MAX_SECONDS
        return base, cap

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.schema,
            "priority": self.priority,
            "queue": self.queue_for(self.priority),
            "max_attempts": self.max_attempts,
            "soft_time_limit": self.soft_time_limit,
            "time_limit": self.time_limit,
            "io_bound": self.io_bound,
            "rate_limit": self.rate_limit,
            "concurrency": self.concurrency,
            "limit_per": self.limit_per,
            "unique": {
                "by": list(self.unique_by),
                "for_seconds": self.unique_for,
                "while": self.unique_while,
                "debounce_seconds": self.debounce_seconds,
            }
            if self.unique_by
            else None,
            "retry": {
                "base_seconds": self.retry_bounds()[0],
                "max_seconds": self.retry_bounds()[1],
                "backoff": "exponential with jitter",
            },
        }


class UnknownKind(LookupError):
    pass


class Registry:
    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def register(self, k: Kind) -> Kind:
        existing = self._kinds.get(k.name)
        if existing is not None and existing.handler is not k.handler:
            raise ValueError(f"kind {k.name} is declared twice")
        self._kinds[k.name] = k
        return k

    def load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            # TASK_MODULES: modules of django.tasks @task functions, each one a kind too
            # (apps.jobs.tasks registers them as they are imported).
            for module in [*settings.JOB_KIND_MODULES, *settings.TASK_MODULES]:
                importlib.import_module(module)
            self._loaded = True

    def get(self, name: str) -> Kind:
        self.load()
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownKind(name) from None

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._kinds

    def __iter__(self) -> Iterator[Kind]:
        self.load()
        return iter(sorted(self._kinds.values(), key=lambda k: k.name))

    def public(self) -> list[Kind]:
        """The kinds a client may submit and see, by name: all but the internal ones."""
        return [k for k in self if not k.internal]


registry = Registry()


def kind(name: str, *, schema: dict[str, Any], **options: Any) -> Callable[[Callable], Callable]:
    """Declare a kind: its handler is the decorated function."""

    def decorate(handler: Callable) -> Callable:
        description = options.pop("description", None) or (handler.__doc__ or "").strip().split("\n")[0]
        registry.register(Kind(name=name, handler=handler, schema=schema, description=description, **options))
        return handler

    return decorate
