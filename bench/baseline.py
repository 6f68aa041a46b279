"""Drive one baseline's drain, in its own process: `python -m bench.baseline plain|dcr N`.
Warms its worker, then publishes N no-op tasks through one producer and waits until all are
done; prints one JSON line with the seconds from the first publish to the last completion."""

from __future__ import annotations

import json
import sys
import time

from bench import cpu


def main(system: str, jobs: int) -> None:
    if system == "plain":
        from bench import plain_celery as baseline

        interval = 0.02
    elif system == "dcr":
        import django

        django.setup()  # the publisher needs the result backend's models too
        from bench import dcr_celery as baseline

        interval = 0.05
    else:
        raise SystemExit(f"unknown baseline {system!r}")

    def wait_for(count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while baseline.done() < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{system}: {baseline.done()} of {count} tasks done after {seconds:g} s")
            time.sleep(interval)

    baseline.reset()
    for i in range(4):  # warm the worker: both pool processes, imports, connections
        baseline.noop.delay(-1 - i)
    wait_for(4, 90)
    baseline.reset()

    before = cpu.snapshot()
    t0 = time.perf_counter()
    with baseline.app.producer_or_acquire() as producer:
        for i in range(jobs):
            baseline.noop.apply_async((i,), producer=producer)
    published = time.perf_counter() - t0
    wait_for(jobs, 60 + jobs / 5)
    seconds = time.perf_counter() - t0
    spent = cpu.spent(before, cpu.snapshot())
    print(json.dumps({"seconds": seconds, "publish_seconds": published, "jobs": jobs, "cpu": spent}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
