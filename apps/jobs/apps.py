from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Import every module named in JOB_KIND_MODULES, so the web process knows each kind's
        # schema and policy without importing the worker runtime.
        from apps.jobs.registry import registry

        registry.load()
