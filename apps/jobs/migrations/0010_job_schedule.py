# The columns a schedule's firing sets on its job (apps.schedules), and the constraint that
# makes each firing one job.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0009_job_workflow"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="schedule_id",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="scheduled_for",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.UniqueConstraint(
                condition=models.Q(("schedule_id__isnull", False)),
                fields=("schedule_id", "scheduled_for"),
                name="job_schedule_firing",
            ),
        ),
    ]
