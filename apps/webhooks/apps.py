from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from apps.jobs.models import Job
        from apps.jobs.signals import job_finished
        from apps.webhooks.receivers import job_finished_deliver_webhook

        job_finished.connect(job_finished_deliver_webhook, sender=Job, dispatch_uid="webhooks.job_finished_deliver")
