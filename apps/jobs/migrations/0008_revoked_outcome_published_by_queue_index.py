from django.db import migrations, models

from apps.core.migration_operations import AddIndexWithoutLocking


class Migration(migrations.Migration):
    # Built without locking out writes: the table may hold millions of rows.
    atomic = False

    dependencies = [
        ("jobs", "0007_attempt_finished_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="jobattempt",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("permanent", "Permanent"),
                    ("lost", "Lost"),
                    ("cancelled", "Cancelled"),
                    ("revoked", "Revoked"),
                ],
                max_length=16,
            ),
        ),
        AddIndexWithoutLocking(
            model_name="job",
            index=models.Index(
                condition=models.Q(("published_at__isnull", False), ("status", "queued")),
                fields=["queue", "published_at"],
                name="job_published_by_queue",
            ),
        ),
    ]
