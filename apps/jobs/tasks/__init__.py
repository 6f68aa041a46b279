"""Django's task API (django.tasks) on this platform's jobs.

`@task` functions in the modules named by settings.TASK_MODULES become kinds (one each, named
after the task), `.enqueue()` submits a job through the same path as the API, and a
TaskResult reads the job back. The backend is apps.jobs.tasks.backend.JobTaskBackend;
docs/kinds.md ("With Django's task API") is the author's guide.

Nothing is imported here: the backend module is loaded by Django's task handler, and the
registry imports the task modules.
"""
