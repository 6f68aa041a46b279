# A paused queue or kind (apps.jobs.pauses).

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    # 0010_job_schedule (apps.schedules) is already in the tree: depending on 0009 beside it
    # would leave two leaf migrations, which `migrate` refuses.
    dependencies = [
        ("jobs", "0010_job_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="Pause",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("target_type", models.CharField(choices=[("queue", "Queue"), ("kind", "Kind")], max_length=8)),
                ("name", models.CharField(max_length=100)),
                ("paused_by", models.CharField(blank=True, default="", max_length=150)),
                ("paused_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "ordering": ["target_type", "name"],
                "constraints": [models.UniqueConstraint(fields=("target_type", "name"), name="pause_target_name")],
            },
        ),
    ]
