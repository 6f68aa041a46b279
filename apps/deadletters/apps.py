from django.apps import AppConfig


class DeadLettersConfig(AppConfig):
    name = "apps.deadletters"
    label = "deadletters"
    verbose_name = "Dead letters"

    def ready(self) -> None:
        # A layer above jobs: it parks failed jobs, closes letters of requeued ones, prunes
        # its own rows and acts in bulk operations through the jobs app's hooks.
        from apps.deadletters import receivers, retention, services
        from apps.deadletters.models import DeadLetter
        from apps.jobs import operations, signals
        from apps.jobs import retention as job_retention
        from apps.jobs.models import BulkOperation, Job

        signals.job_failing.connect(receivers.job_failing_park, sender=Job, dispatch_uid="deadletters.park")
        signals.job_requeued.connect(
            receivers.job_requeued_close_letter, sender=Job, dispatch_uid="deadletters.close_on_requeue"
        )
        job_retention.job_keep_while(retention.job_has_open_letter)
        job_retention.pruner_register("dead_letters", retention.dead_letters_prune_resolved)
        operations.bulk_target_register(
            "dead_letters",
            operations.BulkTarget(
                model=DeadLetter,
                actions={
                    BulkOperation.Action.REDRIVE: lambda pk, actor: (
                        services.dead_letter_redrive(letter_id=pk, actor=actor).changed
                    ),
                    BulkOperation.Action.DISCARD: lambda pk, actor: (
                        services.dead_letter_discard(letter_id=pk, actor=actor).changed
                    ),
                },
            ),
        )
