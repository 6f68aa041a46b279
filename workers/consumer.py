"""Celery's consumer, with one change: the worker's task events leave in timed batches.

With task events on, the main process buffers each task's received, started and
succeeded events and sends what the buffer holds as one message, but it flushes on every
turn of its event loop: about one Redis PUBLISH per event, each a synchronous round trip
made by the one loop that also hands messages to the pool and acknowledges them. In a
profile of a worker draining no-op jobs those round trips were a third of the main
process's time. Here the first event buffered schedules a flush a little later, and
everything buffered by then leaves in that one message (`task.multi`, a list of events:
Flower and every Celery event receiver read it as the events it holds, in order).

The worker selects it through CELERY_WORKER_CONSUMER, and WORKER_EVENTS_FLUSH_SECONDS (0.1) is
the wait (config.settings.celery).
"""

from __future__ import annotations

from celery.worker.consumer import Consumer
from django.conf import settings


class JobConsumer(Consumer):
    _events_flush_due = False

    def on_send_event_buffered(self) -> None:
        if self.hub is None:
            return
        if not self._events_flush_due:
            self._events_flush_due = True
            # How late a task event may reach Flower; at most one PUBLISH per worker this often.
            self.hub.call_later(settings.WORKER_EVENTS_FLUSH_SECONDS, self._flush_events_due)

    def _flush_events_due(self) -> None:
        self._events_flush_due = False
        self._flush_events()

    def shutdown(self) -> None:
        # The last jobs' events wait in the buffer for their flush: send them before the
        # event dispatcher closes with the connection.
        self._events_flush_due = False
        self._flush_events()
        super().shutdown()
