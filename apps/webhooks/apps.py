from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from apps.jobs.models import Job
        from apps.jobs.signals import job_finishing
        from apps.webhooks.receivers import job_finishing_deliver_webhook

        # Inside the finishing transaction: the delivery commits with the job's outcome.
        job_finishing.connect(job_finishing_deliver_webhook, sender=Job, dispatch_uid="webhooks.job_finishing_deliver")
