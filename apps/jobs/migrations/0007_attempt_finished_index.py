from django.db import migrations, models

from apps.core.migration_operations import AddIndexWithoutLocking


class Migration(migrations.Migration):
    # Built without locking out writes: the table may hold millions of rows.
    atomic = False

    dependencies = [
        ("jobs", "0006_owner_kind_status_index"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="jobattempt",
            index=models.Index(fields=["finished_at"], name="attempt_finished"),
        ),
    ]
