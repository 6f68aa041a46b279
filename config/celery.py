"""The one Celery app, configured from Django settings under the CELERY_ namespace."""

import os

from celery import Celery

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
