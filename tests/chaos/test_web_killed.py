"""Chaos: the web process (gunicorn, as the Procfile runs it) killed with kill -9 in the middle
of a burst of submissions, then started again while the burst goes on. A submission that got
its 202 is committed, and runs exactly once; one that got a connection error may or may not
have been committed, and if it was, it runs exactly once too (the relay publishes what was
committed but never published)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from tests.chaos.infra import all_finished_at, exactly_once, milestones, now, query, report, seconds_between
from tests.chaos.servers import kill_group
from tests.conftest import database_url
from tests.processes import free_port, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

CLIENTS = 4
SUBMISSIONS_EACH = 60
KILL_AFTER_ACCEPTED = 60


class Burst:
    """Client threads, each posting its share of submissions once (no retries), as fast as
    the web answers; a refused connection is noted and the next submission follows shortly."""

    def __init__(self, port: int, token: str) -> None:
        self.url = f"http://127.0.0.1:{port}/api/v1/jobs"
        self.token = token
        self.accepted: list[str] = []
        self.answers: dict[str, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]
        self.deadline = time.monotonic() + 120

    def start(self) -> Burst:
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=max(1.0, self.deadline - time.monotonic() + 15))
        assert not any(t.is_alive() for t in self.threads), "the burst did not end by its deadline"

    def _note(self, answer: str, job_id: str | None = None) -> None:
        with self.lock:
            self.answers[answer] = self.answers.get(answer, 0) + 1
            if job_id:
                self.accepted.append(job_id)

    def _run(self) -> None:
        body = json.dumps({"kind": "chaos.effect", "payload": {"seconds": 0}}).encode()
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        for _ in range(SUBMISSIONS_EACH):
            if time.monotonic() > self.deadline:
                return
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=15) as response:
                    status, payload = response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                self._note(str(exc.code))
                continue
            except (OSError, ValueError) as exc:  # refused, reset, or cut off mid-answer
                self._note(type(exc).__name__)
                time.sleep(0.1)
                continue
            self._note(str(status), payload["id"] if status == 202 else None)


def test_every_submission_that_got_a_202_runs_exactly_once_when_web_is_killed_mid_burst(platform, stacks):
    db = database_url()
    stack = stacks("web-kill", database_url=db, redis_url=platform.redis.url)
    owner = get_user_model().objects.create(username="chaos-web-kill")
    token = Token.objects.create(user=owner).key
    port = free_port()
    web = stack.web("web-1", port=port)
    stack.worker("worker", concurrency=2)
    stack.beat()

    burst = Burst(port, token).start()
    wait_for(lambda: len(burst.accepted) >= KILL_AFTER_ACCEPTED, timeout=60, what="the burst under way")
    killed_at = now()
    kill_group(web)  # gunicorn's master and its workers, mid-request
    stack.web("web-2", port=port)
    restarted_at = now()
    burst.join()

    accepted = list(burst.accepted)
    committed = [r[0] for r in query(db, "SELECT id::text FROM jobs_job WHERE owner_id = %s", [owner.id])]
    found = milestones({"all_done": lambda: all_finished_at(db, committed)}, since=restarted_at, timeout=60)
    report(
        "web-kill",
        submissions=CLIENTS * SUBMISSIONS_EACH,
        answers=dict(sorted(burst.answers.items())),
        accepted=len(accepted),
        committed=len(committed),
        committed_without_a_202=len(set(committed) - set(accepted)),
        web_down=seconds_between(killed_at, restarted_at),
        restart_to_all_done=found["all_done"],
    )

    assert set(accepted) <= set(committed), "a job answered with 202 is not in PostgreSQL"
    outcome = exactly_once(db, committed, stack.ledger)
    assert not outcome.problems, outcome.describe()
