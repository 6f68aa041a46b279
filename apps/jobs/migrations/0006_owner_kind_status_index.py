from django.conf import settings
from django.db import migrations, models

from apps.core.migration_operations import AddIndexWithoutLocking, RemoveIndexWithoutLocking


class Migration(migrations.Migration):
    # Built without locking out writes: the table may hold millions of rows.
    atomic = False

    dependencies = [
        ("jobs", "0005_drop_redundant_fk_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="job",
            index=models.Index(fields=["owner", "kind", "status", "-created_at"], name="job_owner_kind_status_created"),
        ),
        RemoveIndexWithoutLocking(model_name="job", name="job_owner_kind_created"),
    ]
