"""The admin's operations dashboard and header: what each figure reads, staff only, a
bounded number of queries, and the attempts chart read through an index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.core.redis import redis_client
from apps.deadletters.models import DeadLetter
from apps.jobs.models import JobAttempt
from apps.ops import control
from apps.ops.admin import attempts_chart
from apps.ops.selectors import WORKER_KEY_PREFIX, attempts_per_minute, queue_figures
from tests.factories import JobFactory, UserFactory

DASHBOARD = "/admin/ops/dashboard/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def attempt(job, number, *, started, finished=None, outcome=JobAttempt.Outcome.SUCCEEDED):
    return JobAttempt.objects.create(
        job=job, number=number, started_at=started, finished_at=finished, outcome=outcome, worker="w"
    )


def test_attempts_per_minute_counts_starts_by_their_start_and_ends_by_their_end(db):
    now = timezone.now().replace(second=30, microsecond=0)
    job = JobFactory()
    attempt(job, 1, started=now - timedelta(minutes=5), finished=now - timedelta(minutes=4))
    attempt(job, 2, started=now - timedelta(minutes=5), finished=now, outcome=JobAttempt.Outcome.FAILED)
    attempt(job, 3, started=now - timedelta(minutes=3), outcome=JobAttempt.Outcome.RUNNING)
    # Started long ago, ended in the window: a success now, not a start now.
    attempt(job, 4, started=now - timedelta(hours=3), finished=now - timedelta(minutes=1))
    attempt(job, 5, started=now - timedelta(hours=3), finished=now - timedelta(hours=2))  # outside
    attempt(job, 6, started=now - timedelta(minutes=2), finished=now, outcome=JobAttempt.Outcome.CANCELLED)

    minutes = attempts_per_minute(minutes=60, now=now)

    assert len(minutes) == 60
    assert minutes[-1].minute == now.replace(second=0).astimezone(minutes[-1].minute.tzinfo)
    by_age = {int((now.replace(second=0) - m.minute).total_seconds() // 60): m for m in minutes}
    assert (by_age[5].started, by_age[3].started, by_age[2].started) == (2, 1, 1)
    assert (by_age[4].succeeded, by_age[1].succeeded) == (1, 1)
    assert (by_age[0].succeeded, by_age[0].failed) == (0, 1)  # a cancelled attempt is neither
    assert sum(m.started for m in minutes) == 4
    assert sum(m.succeeded for m in minutes) == 2


def test_attempts_per_minute_reads_the_attempt_finished_index(db):
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL plan")
    from apps.ops import selectors

    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a handful of rows: show the index can serve it
    try:
        first = timezone.now() - timedelta(hours=1)
        plans = [
            JobAttempt.objects.filter(finished_at__gte=first).values("outcome").explain(),
            JobAttempt.objects.filter(
                selectors.Q(finished_at__gte=first) | selectors.Q(finished_at__isnull=True), started_at__gte=first
            ).explain(),
        ]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_seqscan")
    for plan in plans:
        assert "attempt_finished" in plan, plan


def test_the_chart_has_three_bars_a_minute_scaled_to_the_busiest(db):
    now = timezone.now()
    job = JobFactory()
    for n in range(1, 5):
        attempt(job, n, started=now - timedelta(seconds=n), finished=now)

    chart = attempts_chart(attempts_per_minute(minutes=60, now=now))

    assert len(chart.bars) == 180
    assert chart.top_value == 4
    assert max(bar.height for bar in chart.bars) == chart.plot_height
    assert chart.totals == {"started": 4, "succeeded": 4, "failed": 0}
    assert len(chart.ticks) == 6


def test_queue_figures_read_redis_depth_and_the_oldest_queued_job(db):
    r = redis_client()
    before = r.llen("low")
    r.rpush("low", "dashboard-test-1", "dashboard-test-2")
    JobFactory(queue="low", status="queued", created_at=timezone.now() - timedelta(minutes=2))
    try:
        figures = {q.name: q for q in queue_figures(("high", "low"))}
    finally:
        r.lrem("low", 0, "dashboard-test-1")
        r.lrem("low", 0, "dashboard-test-2")
    assert figures["low"].depth == before + 2
    assert 110 < figures["low"].oldest_age_seconds < 300


def test_the_dashboard_shows_every_figure_in_a_bounded_number_of_queries(admin_client, django_assert_max_num_queries):
    r = redis_client()
    r.set(f"{WORKER_KEY_PREFIX}celery@dashboard-test", "1", ex=30)
    epoch = control.control_loop_elect(identity="beat@dashboard-test", lease_seconds=60)
    control.control_loop_sweep_record(identity="beat@dashboard-test", epoch=epoch, figures={})
    job = JobFactory(status="failed")
    DeadLetter.objects.create(job=job, kind=job.kind, error_type="Boom")
    attempt(job, 1, started=timezone.now(), finished=timezone.now(), outcome=JobAttempt.Outcome.PERMANENT)
    try:
        # The session and user, the six queues' ages (the priorities' and the I/O ones), the
        # chart's two queries, the letters' two, the control loop's two.
        with django_assert_max_num_queries(15):
            response = admin_client.get(DASHBOARD)
    finally:
        r.delete(f"{WORKER_KEY_PREFIX}celery@dashboard-test")

    assert response.status_code == 200
    content = response.content.decode()
    for queue in ("high", "default", "low"):
        assert f'<th scope="row">{queue}</th>' in content
    assert "celery@dashboard-test" in content
    assert "beat@dashboard-test (epoch 1)" in content
    assert "<svg" in content
    assert content.count("<rect") == 180
    assert "1 failed)" in content  # the chart's totals
    assert 'state__exact=open">1</a>' in content
    assert "<script" not in content.split('id="ops-dashboard"')[1]


def test_the_dashboard_is_for_staff_only(client, db):
    anonymous = client.get(DASHBOARD)
    client.force_login(UserFactory(username="not-staff"))
    not_staff = client.get(DASHBOARD)

    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    assert not_staff.status_code == 302
    assert not_staff["Location"].startswith("/admin/login/")


def test_a_staff_user_without_model_permissions_still_sees_the_dashboard(client, db):
    client.force_login(UserFactory(username="bare-staff", is_staff=True))

    assert client.get(DASHBOARD).status_code == 200


def test_the_admin_index_links_to_the_dashboard(admin_client):
    content = admin_client.get("/admin/").content.decode()

    assert f'href="{DASHBOARD}"' in content


def test_the_header_names_the_site_and_links_flower_apart(admin_client, settings):
    settings.FLOWER_URL = "http://flower.example/"

    content = admin_client.get("/admin/").content.decode()

    site_name = content.split('id="site-name"')[1].split("</div>")[0]
    user_tools = content.split('id="user-tools"')[1].split("</div>")[0]
    assert "Job platform admin" in site_name
    assert "Flower" not in site_name
    assert '<a href="http://flower.example/" id="flower-link">Flower</a>' in user_tools


def test_without_a_flower_url_the_header_has_no_flower_link(admin_client, settings):
    settings.FLOWER_URL = ""

    assert 'id="flower-link"' not in admin_client.get("/admin/").content.decode()
