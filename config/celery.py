"""The one Celery app, configured from Django settings under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("jobplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Only the worker and beat import the runtime, which registers one task per kind. The web
# process publishes by task name and never imports it (see apps.jobs.publish).
app.conf.imports = ["workers.tasks"]
