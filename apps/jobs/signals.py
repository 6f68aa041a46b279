"""What happens to jobs, for the parts of the platform that follow it (dead letters, webhooks,
metrics) without the jobs app knowing them. Most are sent after the change commits; the
`-ing` ones and job_requeued are sent inside the transaction that writes the change, so what a
receiver writes there commits or rolls back with it."""

from django.dispatch import Signal

# jobs: list[Job], freshly committed as queued (or scheduled).
jobs_submitted = Signal()
# job_id, kind, attempt (its number): a worker claimed a queued job (queued -> running).
job_started = Signal()
# job_id, kind, status, callback_url, workflow_id (or None): a job is reaching succeeded,
# failed or cancelled; sent inside the finishing transaction (a webhook delivery is created
# in it, a workflow releases or cancels the job's dependents in it). Only a final outcome
# sends it: an attempt that will be retried sends job_retried.
job_finishing = Signal()
# job_id, kind, status, callback_url, duration_ms: a job reached succeeded, failed or cancelled.
job_finished = Signal()
# job_id, kind: a job whose attempt failed and that waits out a backoff before the next one.
job_retried = Signal()
# job: Job, now: a job is reaching failed; sent inside the failing transaction (the dead
# letters park it in it, so every failed job has its letter).
job_failing = Signal()
# job: Job, actor, now: a failed or cancelled job is queued again with fresh attempts; sent
# inside that transaction (an open dead letter is closed in it).
job_requeued = Signal()
# job_id, kind: a job was parked in the dead letters (after the commit).
job_dead_lettered = Signal()
