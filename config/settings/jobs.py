"""Jobs: the kinds, leases, retries, the reconciler, admission control and fairness,
webhooks, and the files jobs make. Every variable read here is described in docs/settings.md."""

from __future__ import annotations

from pathlib import Path

from config.env import env_bool, env_float, env_int, env_list, env_str
from config.settings.base import BASE_DIR

# The modules that declare kinds. The registry imports them at start-up, in the web process
# and the worker alike, so the web process can validate every kind without the worker runtime.
JOB_KIND_MODULES = env_list(
    "JOB_KIND_MODULES",
    ["workers.kinds.diagnostics", "workers.kinds.images", "workers.kinds.webhooks"],
)
DIAGNOSTICS_UNSAFE = env_bool("DIAGNOSTICS_UNSAFE", False)
JOB_LEASE_SECONDS = env_float("JOB_LEASE_SECONDS", 15.0, minimum=1.0)
JOB_RETRY_BASE_SECONDS = env_float("JOB_RETRY_BASE_SECONDS", 1.0, minimum=0.0)
JOB_RETRY_MAX_SECONDS = env_float("JOB_RETRY_MAX_SECONDS", 300.0, minimum=0.0)
RECONCILE_INTERVAL_SECONDS = env_float("RECONCILE_INTERVAL_SECONDS", 1.0, minimum=0.1)
# How often the control loop's leader looks for due schedules (apps.schedules.firing): a
# firing's job exists at most about this long after its time. One indexed read when none is due.
SCHEDULE_SWEEP_SECONDS = env_float("SCHEDULE_SWEEP_SECONDS", 0.25, minimum=0.05)
# Fair dispatch (apps.jobs.dispatch): each queue's messages in Redis are capped at a window of
# about DISPATCH_WINDOW_SECONDS of its drain (within MIN and MAX); the rest of the backlog waits
# in PostgreSQL, and the leader's dispatcher tops the window up from every client in turn,
# looking every DISPATCH_INTERVAL_SECONDS. A client's job waits behind at most one window.
DISPATCH_WINDOW_SECONDS = env_float("DISPATCH_WINDOW_SECONDS", 1.0, minimum=0.05)
DISPATCH_WINDOW_MIN = env_int("DISPATCH_WINDOW_MIN", 32, minimum=1)
DISPATCH_WINDOW_MAX = env_int("DISPATCH_WINDOW_MAX", 2000, minimum=1)
DISPATCH_INTERVAL_SECONDS = env_float("DISPATCH_INTERVAL_SECONDS", 0.05, minimum=0.01)
# The stranded-job sweep (apps.jobs.stranded): a published job's message counts as gone only
# this long after its publish (covers the push-to-stamp gap and the machines' clock skew), and
# the check runs at most this often.
STRANDED_GRACE_SECONDS = env_float("STRANDED_GRACE_SECONDS", 30.0, minimum=1.0)
STRANDED_CHECK_SECONDS = env_float("STRANDED_CHECK_SECONDS", 10.0, minimum=0.1)
# Admission control: jobs waiting per queue, and jobs in flight (queued, running, retrying)
# per client, past which submissions answer 429 with a Retry-After from the drain rate. A
# client's quota sits well below a queue's depth, so one client cannot fill a queue and turn
# every other client away with 429 queue_full. A client may still load 100,000 jobs at once
# (the contract checks do); a message takes about 1 KB of Redis memory, so a full queue about
# 1 GB: size QUEUE_MAX_DEPTH by the broker's memory.
QUEUE_MAX_DEPTH = env_int("QUEUE_MAX_DEPTH", 1_000_000, minimum=1)
CLIENT_MAX_IN_FLIGHT = env_int("CLIENT_MAX_IN_FLIGHT", 125_000, minimum=1)
# Who may ask for `high` priority (403 priority_not_allowed otherwise): staff, plus these
# usernames; `*` (the default, as the API contract has always allowed) lets every client.
# Name the clients in production so one client cannot jump every queue. A kind whose own
# default is high runs high for anyone.
HIGH_PRIORITY_CLIENTS = env_list("HIGH_PRIORITY_CLIENTS", ["*"])
RETRY_AFTER_MAX_SECONDS = env_int("RETRY_AFTER_MAX_SECONDS", 60, minimum=1)
# How long a job waits for its kind's concurrency slot or rate limit before another try.
JOB_DEFER_MAX_SECONDS = env_float("JOB_DEFER_MAX_SECONDS", 5.0, minimum=0.1)
# Webhooks: allow callback URLs on private and loopback addresses (local use only).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
# Seconds a webhook POST may take to connect, and for each read.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# Uploaded files and the files jobs make, through Django's storage API (default_storage):
# a FileSystemStorage under MEDIA_ROOT unless STORAGES names another backend (a cloud bucket).
# Never served as /media/: files leave only through the API, to their owner.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or env_str("JOB_MEDIA_ROOT") or (BASE_DIR / "var" / "media"))
MEDIA_URL = "media/"
JOB_MEDIA_ROOT = MEDIA_ROOT  # the older name
# images.thumbnail decodes an image only when its pixels (times the bytes Pillow keeps per
# pixel, plus an RGB(A) conversion) fit this; a JPEG is decoded at a reduced scale first.
# The pixel limit alone let a 154 KB PNG of 6000x6600 pixels take a worker to 773 MB.
IMAGE_MAX_DECODE_BYTES = env_int("IMAGE_MAX_DECODE_BYTES", 64 * 1024 * 1024, minimum=1024 * 1024)
# What a handler logs (ctx.log, or the logging module inside the handler) is kept with its
# attempt (workers.joblog): at most this many lines and bytes of message per attempt; past
# either cap the first lines are kept and one last line says how many more were dropped.
JOB_LOG_MAX_LINES = env_int("JOB_LOG_MAX_LINES", 1000, minimum=0)
JOB_LOG_MAX_BYTES = env_int("JOB_LOG_MAX_BYTES", 64 * 1024, minimum=0)
# Django's task API (django.tasks; the django-tasks backport on Django 5.2): @task functions
# become kinds of this platform (apps.jobs.tasks, docs/kinds.md "With Django's task API").
# TASK_MODULES are the modules that define them, imported at start-up beside JOB_KIND_MODULES;
# a task of any other module is refused at enqueue (the worker would not know it). Its jobs
# belong to the user TASK_OWNER names (created on first use; a backend's OPTIONS "OWNER"
# overrides it).
TASK_MODULES = env_list("TASK_MODULES", [])
TASK_OWNER = env_str("TASK_OWNER") or "django-tasks"
TASKS = {"default": {"BACKEND": "apps.jobs.tasks.backend.JobTaskBackend"}}
