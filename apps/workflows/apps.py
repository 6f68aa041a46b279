from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "apps.workflows"
    label = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        # A layer above jobs: it follows a member's finish and its redrive through the jobs
        # app's signals, both sent inside the transaction that writes the change, so what a
        # workflow does about it (release, cancel, re-open) commits or rolls back with it.
        from apps.jobs import retention as job_retention
        from apps.jobs import signals
        from apps.jobs.models import Job
        from apps.webhooks import services as webhooks
        from apps.workflows import receivers, retention, services

        signals.job_finishing.connect(receivers.job_finishing_follow, sender=Job, dispatch_uid="workflows.finishing")
        signals.job_requeued.connect(receivers.job_requeued_reopen, sender=Job, dispatch_uid="workflows.requeued")
        webhooks.webhook_event_register(services.EVENT_WORKFLOW_FINISHED, services.workflow_webhook_document)
        job_retention.job_keep_while(retention.job_in_running_workflow)
        job_retention.pruner_register("workflows", retention.workflows_prune_finished)
