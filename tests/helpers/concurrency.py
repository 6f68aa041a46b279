"""Submissions racing from many connections at once: threads released together, each with
its own API client and database connection (the test needs committed data: transactional_db)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections
from rest_framework.test import APIClient

DEADLINE_SECONDS = 60


def race(count: int, token: str, submit: Callable[[APIClient], Any]) -> list[Any]:
    """Run `submit` from `count` threads released together; each thread has its own client
    and its own database connection, closed when it is done."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int, token: str) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            barrier.wait(timeout=DEADLINE_SECONDS)
            results[index] = submit(client)
        except Exception as exc:  # reported by the assertion below, not lost in the thread
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, token)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
    assert not any(t.is_alive() for t in threads), "a submission did not finish within the deadline"
    assert not any(isinstance(r, Exception) for r in results), results
    return results
