"""A job's life, by phase. Views, admin actions, tasks and commands call these; none holds
business logic of its own. Callers import the package (`from apps.jobs import lifecycle`);
each module keeps one phase:

- validation: a submission's checks (kind, payload, priority, attempts, outbound URLs)
- admission: refusing work the platform cannot absorb (429/503 with Retry-After)
- submit: check, admit, create; `jobs_create` is the one creation path
- idempotency: one job per (client, Idempotency-Key)
- unique: one job per (client, a unique kind's key), and debounce
- attempt: the worker's claim, lease, progress, steps, succeed and fail
- control: cancel (by a client, or by a revoke through Celery), and queue a finished job again
- backoff: the wait before the next attempt
- events: the signals the layers above (dead letters, webhooks, metrics) follow
- store: the PostgreSQL fast paths beside their portable fallback"""

from apps.jobs.lifecycle.admission import job_admission_check, jobs_admit
from apps.jobs.lifecycle.attempt import (
    AttemptFailure,
    Claim,
    job_after_failed_attempt,
    job_attempt_timed_out,
    job_cancel_requested,
    job_claim,
    job_defer,
    job_fail_attempt,
    job_heartbeat,
    job_report_progress,
    job_step_once,
    job_succeed,
    lease_seed,
    record_lost_attempt,
)
from apps.jobs.lifecycle.backoff import backoff_seconds, retry_delay_seconds
from apps.jobs.lifecycle.control import (
    REVOKED_ERROR_TYPE,
    job_attempt_revoked,
    job_cancel,
    job_requeue_fresh,
    job_revoked,
)
from apps.jobs.lifecycle.events import duration_ms
from apps.jobs.lifecycle.idempotency import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_TTL,
    Submission,
    idempotency_keys_prune,
    job_submit_idempotent,
    request_fingerprint,
)
from apps.jobs.lifecycle.store import lease_token_for, new_job
from apps.jobs.lifecycle.submit import (
    job_check_and_admit,
    job_submit,
    job_submit_batch,
    jobs_check_all,
    jobs_create,
)
from apps.jobs.lifecycle.unique import DEDUPLICATED_HEADER, job_deduplicated, unique_key
from apps.jobs.lifecycle.validation import (
    CheckedJob,
    PriorityNotAllowed,
    job_check,
    job_check_priority_allowed,
    job_refuse_internal_kind,
    job_validate,
    job_validate_callback_url,
    job_validate_outbound_urls,
)

__all__ = [
    "DEDUPLICATED_HEADER",
    "IDEMPOTENCY_KEY_MAX_LENGTH",
    "IDEMPOTENCY_TTL",
    "REVOKED_ERROR_TYPE",
    "AttemptFailure",
    "CheckedJob",
    "Claim",
    "PriorityNotAllowed",
    "Submission",
    "backoff_seconds",
    "duration_ms",
    "idempotency_keys_prune",
    "job_admission_check",
    "job_after_failed_attempt",
    "job_attempt_revoked",
    "job_attempt_timed_out",
    "job_cancel",
    "job_cancel_requested",
    "job_check",
    "job_check_and_admit",
    "job_check_priority_allowed",
    "job_claim",
    "job_deduplicated",
    "job_defer",
    "job_fail_attempt",
    "job_heartbeat",
    "job_refuse_internal_kind",
    "job_report_progress",
    "job_requeue_fresh",
    "job_revoked",
    "job_step_once",
    "job_submit",
    "job_submit_batch",
    "job_submit_idempotent",
    "job_succeed",
    "job_validate",
    "job_validate_callback_url",
    "job_validate_outbound_urls",
    "jobs_admit",
    "jobs_check_all",
    "jobs_create",
    "lease_seed",
    "lease_token_for",
    "new_job",
    "record_lost_attempt",
    "request_fingerprint",
    "retry_delay_seconds",
    "unique_key",
]
