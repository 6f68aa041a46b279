from django.db import migrations, models


def create_beat_loop(apps, schema_editor):
    # The row exists from the start, so electing a leader is an update of one row and two
    # beats starting together never race to insert it.
    apps.get_model("ops", "ControlLoop").objects.get_or_create(name="beat")


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="ControlLoop",
            fields=[
                ("name", models.CharField(max_length=50, primary_key=True, serialize=False)),
                ("leader", models.CharField(blank=True, default="", max_length=255)),
                ("epoch", models.BigIntegerField(default=0)),
                ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
                ("elected_at", models.DateTimeField(blank=True, null=True)),
                ("last_sweep_at", models.DateTimeField(blank=True, null=True)),
                ("last_sweep_figures", models.JSONField(blank=True, default=dict)),
                ("stall_alerted_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={"verbose_name": "control loop"},
        ),
        migrations.RunPython(create_beat_loop, migrations.RunPython.noop),
    ]
