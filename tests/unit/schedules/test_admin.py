"""The admin: schedules editable through the services, the timing in words with the next
five runs, "Run now" behind a confirmation and the change permission, enable and disable."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from apps.jobs.models import Job
from apps.schedules import firing
from apps.schedules.models import Schedule
from tests.factories import UserFactory
from tests.unit.schedules.helpers import make

pytestmark = pytest.mark.django_db


def test_the_change_page_shows_the_timing_in_words_and_the_next_five_runs(admin_client, user):
    schedule = make(user, cron="30 2 * * *", timezone_name="Europe/Berlin")
    html = admin_client.get(f"/admin/schedules/schedule/{schedule.id}/change/").content.decode()
    assert "At 02:30 every day (Europe/Berlin)" in html
    assert html.count("<li><time datetime=") == 5
    assert 'id="action-run-now"' in html
    assert 'name="_save"' in html  # editable, unlike the jobs' read-only pages


def test_run_now_asks_first_then_makes_one_job(admin_client, user):
    schedule = make(user)
    url = f"/admin/schedules/schedule/{schedule.id}/run-now/"
    asked = admin_client.get(url)
    assert asked.status_code == 200
    assert "Yes, run now" in asked.content.decode()
    assert not Job.objects.filter(schedule_id=schedule.pk).exists()
    done = admin_client.post(url)
    assert done.status_code == 302
    assert Job.objects.filter(schedule_id=schedule.pk).count() == 1


def test_run_now_needs_the_change_permission(client, user):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client.force_login(viewer)
    schedule = make(user)
    page = client.get(f"/admin/schedules/schedule/{schedule.id}/change/").content.decode()
    assert 'id="action-run-now"' not in page
    assert client.post(f"/admin/schedules/schedule/{schedule.id}/run-now/").status_code == 403
    assert not Job.objects.filter(schedule_id=schedule.pk).exists()


def test_editing_a_schedule_goes_through_its_checks(admin_client, user):
    schedule = make(user, every_seconds=10)
    url = f"/admin/schedules/schedule/{schedule.id}/change/"
    form = {"kind": "diagnostics.noop", "payload": "{}", "priority": "", "cron": "61 * * * *", "every_seconds": ""}
    refused = admin_client.post(url, {**form, "timezone": "UTC", "enabled": "on"})
    assert refused.status_code == 200
    assert "Bad minute" in refused.content.decode()
    saved = admin_client.post(url, {**form, "cron": "0 9 * * *", "timezone": "UTC", "enabled": "on"})
    assert saved.status_code == 302
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.every_seconds) == ("0 9 * * *", None)
    assert schedule.next_run_at.hour == 9


def test_adding_a_schedule_in_the_admin(admin_client, user):
    answer = admin_client.post(
        "/admin/schedules/schedule/add/",
        {
            "owner": user.pk,
            "kind": "diagnostics.noop",
            "payload": "{}",
            "priority": "",
            "cron": "",
            "every_seconds": "60",
            "timezone": "UTC",
            "enabled": "on",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    schedule = Schedule.objects.get()
    assert (schedule.owner, schedule.every_seconds) == (user, 60)


def test_enable_and_disable_actions(admin_client, user):
    schedules = [make(user) for _ in range(2)]
    ids = [str(s.pk) for s in schedules]
    admin_client.post("/admin/schedules/schedule/", {"action": "disable", "_selected_action": ids})
    assert not Schedule.objects.filter(enabled=True).exists()
    admin_client.post("/admin/schedules/schedule/", {"action": "enable", "_selected_action": ids})
    assert Schedule.objects.filter(enabled=True).count() == 2


def test_the_actions_need_the_change_permission(client, user):
    viewer = UserFactory(username="viewer2", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client.force_login(viewer)
    schedule = make(user)
    client.post("/admin/schedules/schedule/", {"action": "disable", "_selected_action": [str(schedule.pk)]})
    assert Schedule.objects.get(pk=schedule.pk).enabled


def test_the_jobs_list_filters_by_schedule(admin_client, user):
    schedule, other = make(user), make(user)
    firing.schedules_fire_due(now=schedule.next_run_at)
    page = admin_client.get(f"/admin/jobs/job/?schedule_id={schedule.id}")
    assert page.status_code == 200
    html = page.content.decode()
    assert str(Job.objects.get(schedule_id=schedule.pk).id)[:8] in html
    assert str(Job.objects.get(schedule_id=other.pk).id)[:8] not in html


def test_the_list_and_the_add_page_render(admin_client, user):
    make(user, cron="*/5 * * * *")
    listing = admin_client.get("/admin/schedules/schedule/")
    assert listing.status_code == 200
    assert "*/5 * * * *" in listing.content.decode()
    assert admin_client.get("/admin/schedules/schedule/add/").status_code == 200
