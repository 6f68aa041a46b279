"""Beat's scheduler. Entries marked `inline` run inside the beat process instead of being
sent to a queue: recovering crashed work and relaying the outbox must not wait behind the
very backlog or the dead workers they exist to repair."""

from __future__ import annotations

import logging
import time

from celery.beat import Scheduler

logger = logging.getLogger("workers.beat")


class InlineScheduler(Scheduler):
    def setup_schedule(self) -> None:
        import workers.tasks  # noqa: F401  (registers platform.reconcile in this process)

        super().setup_schedule()

    def apply_entry(self, entry, producer=None):  # type: ignore[no-untyped-def]
        if not entry.options.get("inline"):
            return super().apply_entry(entry, producer=producer)
        started = time.monotonic()
        try:
            figures = self.app.tasks[entry.task](*entry.args, **entry.kwargs)
        except Exception:
            logger.exception("inline task %s failed", entry.task)
            return None
        if figures and any(v for v in (figures.values() if isinstance(figures, dict) else [])):
            logger.info("%s: %s in %.0f ms", entry.task, figures, (time.monotonic() - started) * 1000)
        return None
