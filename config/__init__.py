# The Celery app is created once and loaded when Django starts, so `shared_task` and
# `send_task` from the web process use it (cookiecutter-django's pattern).
from config.celery import app as celery_app

__all__ = ("celery_app",)
