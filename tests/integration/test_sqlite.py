"""The stack's default database, when DATABASE_URL is unset, is a SQLite file (bin/up): the
claim and finish paths, which use hand-written SQL on PostgreSQL, must work there too."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import ROOT

SCRIPT = """
import django
django.setup()
from django.contrib.auth import get_user_model
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt

owner = get_user_model().objects.create(username="sqlite-client")
job = lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
claim = lifecycle.job_claim(job_id=str(job.id), worker="w1")
assert claim is not None and claim.attempt == 1 and claim.payload == {}, claim
assert claim.created_at.tzinfo is not None
assert lifecycle.job_claim(job_id=str(job.id), worker="w2") is None
assert lifecycle.job_succeed(claim=claim, result={"ok": True})
job.refresh_from_db()
assert (job.status, job.result) == ("succeeded", {"ok": True}), job.status
assert JobAttempt.objects.get(job=job).outcome == "succeeded"
print("sqlite ok")
"""


def test_claim_and_finish_work_on_the_default_sqlite_database(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sqlite ok" in run.stdout
