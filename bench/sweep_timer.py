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
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main(int(sys.argv[1]))
