"""Submit jobs to a stack the test process has no ORM connection to (a PostgreSQL of the
test's own): `python -m tests.chaos.submit < jobs.json`, with DATABASE_URL and REDIS_URL set.

Reads {"owner": name, "jobs": [{"kind", "payload"}, ...]} and prints the job ids, as a JSON
list, on its last line. Each job goes through `job_submit`, as the API's would."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from apps.jobs.lifecycle import job_submit

    request = json.load(sys.stdin)
    owner, _ = get_user_model().objects.get_or_create(username=request["owner"])
    ids = [str(job_submit(owner=owner, kind=job["kind"], payload=job["payload"]).id) for job in request["jobs"]]
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
