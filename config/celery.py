"""The one Celery app, configured from Django settings under the CELERY_ namespace."""

import os
from typing import Any

from celery import Celery, signals

from apps.core import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("jobplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Only the worker and beat import the runtime, which registers one task per kind. The web
# process publishes by task name and never imports it (see apps.jobs.publish).
app.conf.imports = ["workers.tasks"]


@app.on_after_configure.connect
def _reuse_database_connections(sender: Celery, **kwargs: object) -> None:
    # Celery's Django fixup closes every database connection before and after each task
    # unless CELERY_DB_REUSE_MAX is set: a new PostgreSQL connection per job, most of a
    # short job's cost. Reuse each for up to this many tasks (Django's CONN_MAX_AGE and
    # health checks still apply). The fixup reads this old-style key under exactly this name.
    sender.conf["CELERY_DB_REUSE_MAX"] = 1000


# Tracing (apps.core.telemetry), a no-op unless configured: set up in the process that runs the
# jobs, after any fork (a prefork pool's children; the worker itself for a thread, gevent or
# solo pool; beat), and flushed when that process ends.
@signals.worker_process_init.connect(weak=False)
def _trace_pool_process(**kwargs: object) -> None:
    telemetry.configure("worker")


@signals.worker_process_shutdown.connect(weak=False)
def _flush_pool_process(**kwargs: object) -> None:
    telemetry.shutdown()


@signals.worker_init.connect(weak=False)
def _trace_worker(sender: Any = None, **kwargs: object) -> None:
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool as PreforkPool

    pool = get_implementation(getattr(sender, "pool_cls", None) or "prefork")
    if not (isinstance(pool, type) and issubclass(pool, PreforkPool)):
        telemetry.configure("worker")


@signals.worker_shutdown.connect(weak=False)
def _flush_worker(**kwargs: object) -> None:
    telemetry.shutdown()  # a no-op where this process did not set tracing up


@signals.beat_init.connect(weak=False)
def _trace_beat(**kwargs: object) -> None:
    # Beat exits through sys.exit: the SDK's own atexit hook exports what is left.
    telemetry.configure("beat")
