"""Time the beat's sweeps against the bench database, in a Django process of the platform's
own settings: `python -m bench.sweep_timer REPEATS`. Prints one JSON line: for each sweep,
the milliseconds of every repeat and what the last one did."""

from __future__ import annotations

import json
import sys
import time


def main(repeats: int) -> None:
    import django

    django.setup()
    from django.utils import timezone

    from apps.jobs import reconciler, retention

    sweeps = {
        "reconcile": (reconciler.reconcile, repeats),
        "promote_due": (lambda: reconciler.jobs_promote_due(now=timezone.now()), repeats),
        "relay_unpublished": (lambda: reconciler.jobs_relay_unpublished(now=timezone.now()), repeats),
        "expire_leases": (lambda: reconciler.jobs_expire_leases(now=timezone.now()), repeats),
        "repair_broker_loss": (reconciler.jobs_repair_broker_loss, repeats),
        "prune": (retention.prune, max(1, min(repeats, 3))),
    }
    figures = {}
    for name, (sweep, times) in sweeps.items():
        sweep()  # connections and imports warm, not measured
        ms = []
        for _ in range(times):
            t0 = time.perf_counter()
            outcome = sweep()
            ms.append((time.perf_counter() - t0) * 1000)
        figures[name] = {"ms": ms, "outcome": outcome}
    figures["admin"] = admin_pages(repeats=max(3, min(repeats, 10)))
    print(json.dumps(figures, default=str))


def admin_pages(repeats: int) -> dict[str, list[float]]:
    """The admin's job and dead-letter lists, filtered and searched, as a staff user sees
    them (Django's test client in this process, so the figures are the server's own time)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    with connection.cursor() as cursor:
        # Dead letters for the seeded failed jobs, so their page has something to page through.
        cursor.execute("SELECT count(*) FROM deadletters_deadletter")
        if cursor.fetchone()[0] == 0:
            cursor.execute(
                "INSERT INTO deadletters_deadletter (job_id, kind, payload, error_type, error_message, traceback, "
                "errors, attempts, state, created_at, resolved_by) "
                "SELECT id, kind, payload, 'Boom', 'it broke', '', '[]', attempts, 'open', "
                "coalesce(finished_at, created_at), '' FROM jobs_job WHERE status = 'failed'"
            )
            cursor.execute("ANALYZE deadletters_deadletter")
        cursor.execute("SELECT id FROM jobs_job WHERE status = 'failed' LIMIT 1")
        failed_id = str(cursor.fetchone()[0])
    admin, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin)
    pages = {
        "jobs, first page": "/admin/jobs/job/",
        "jobs filtered by status and kind": "/admin/jobs/job/?status__exact=failed&kind=diagnostics.sleep",
        "jobs searched by id": f"/admin/jobs/job/?q={failed_id}",
        "dead letters, first page": "/admin/deadletters/deadletter/",
        "dead letters filtered by kind": "/admin/deadletters/deadletter/?kind__exact=images.thumbnail",
        "dead letters searched by job id": f"/admin/deadletters/deadletter/?q={failed_id}",
    }
    timings: dict[str, list[float]] = {}
    for name, url in pages.items():
        response = client.get(url)  # warm
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            client.get(url)
            ms.append((time.perf_counter() - t0) * 1000)
        timings[name] = ms
    return timings


if __name__ == "__main__":
    main(int(sys.argv[1]))
