"""What happens to jobs, for the parts of the platform that follow it (metrics, webhooks)
without the jobs app knowing them. Each is sent after the change commits."""

from django.dispatch import Signal

# jobs: list[Job], freshly committed as queued (or scheduled).
jobs_submitted = Signal()
# job_id, kind: a worker claimed a queued job (queued -> running).
job_started = Signal()
# job: Job that reached succeeded, failed or cancelled.
job_finished = Signal()
# job: Job whose attempt failed and that waits out a backoff before the next one.
job_retried = Signal()
# job: Job parked in the dead letters.
job_dead_lettered = Signal()
