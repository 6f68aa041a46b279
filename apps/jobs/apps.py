from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Import every module named in JOB_KIND_MODULES, so the web process knows each kind's
        # schema and policy without importing the worker runtime.
        from apps.jobs import notify, signals
        from apps.jobs.registry import registry

        registry.load()

        # Long polls wake when a job changes state: a Redis PUBLISH per change, after commit.
        # Not on jobs_submitted: no client can be waiting on a job before the 202 that names
        # it, so a batch of 1,000 would ring 1,000 doorbells for no one.
        for signal in (signals.job_started, signals.job_finished, signals.job_retried, signals.job_dead_lettered):
            signal.connect(notify.on_job_changed, dispatch_uid="apps.jobs.notify")

        # The job's id and kind on its spans, once tracing is on (a no-op otherwise).
        from apps.core import telemetry
        from apps.jobs import tracing

        telemetry.when_enabled(tracing.follow_jobs)
