"""The dead-letter page in the admin: read-only, never deleted there, with Redrive and
Discard buttons (a confirmation page, then a POST through the services) for staff who may
change dead letters."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory
from tests.helpers.jobs import failed_for_good

LETTERS = "/admin/deadletters/deadletter/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def letter(db) -> DeadLetter:
    job = failed_for_good(UserFactory(username="letters-client"))
    return DeadLetter.objects.get(job=job, state=DeadLetter.State.OPEN)


@pytest.fixture
def viewer_client(client, db):
    viewer = UserFactory(username="letter-viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_job", "view_deadletter"]))
    client.force_login(viewer)
    return client


def test_a_letters_page_has_no_editable_field_and_no_save_or_delete(admin_client, letter):
    response = admin_client.get(f"{LETTERS}{letter.pk}/change/")
    content = response.content.decode()

    assert "Alerted at" in content  # shown, as text
    assert response.context["adminform"].form.fields == {}  # every field read-only
    assert 'name="alerted_at' not in content
    assert 'name="_save"' not in content
    assert f"{LETTERS}{letter.pk}/delete/" not in content


def test_posting_the_letters_form_changes_nothing(admin_client, letter):
    response = admin_client.post(f"{LETTERS}{letter.pk}/change/", {"alerted_at_0": "2020-01-01", "state": "discarded"})

    assert response.status_code == 403
    letter.refresh_from_db()
    assert (letter.state, letter.alerted_at) == (DeadLetter.State.OPEN, None)


def test_letters_cannot_be_deleted_from_the_admin(admin_client, letter):
    listing = admin_client.get(LETTERS).content.decode()
    delete_page = admin_client.get(f"{LETTERS}{letter.pk}/delete/")
    bulk = admin_client.post(LETTERS, {"action": "delete_selected", "_selected_action": [letter.pk], "post": "yes"})

    assert 'value="delete_selected"' not in listing
    assert delete_page.status_code == 403
    assert bulk.status_code in (200, 302)
    assert DeadLetter.objects.filter(pk=letter.pk).exists()


def test_an_open_letters_page_offers_redrive_and_discard(admin_client, letter):
    content = admin_client.get(f"{LETTERS}{letter.pk}/change/").content.decode()

    assert f'href="{LETTERS}{letter.pk}/redrive/"' in content
    assert f'href="{LETTERS}{letter.pk}/discard/"' in content


def test_a_resolved_letters_page_offers_neither(admin_client, letter):
    admin_client.post(f"{LETTERS}{letter.pk}/discard/")

    content = admin_client.get(f"{LETTERS}{letter.pk}/change/").content.decode()

    assert f"{LETTERS}{letter.pk}/redrive/" not in content
    assert f"{LETTERS}{letter.pk}/discard/" not in content


@pytest.mark.parametrize("button", ["redrive", "discard"])
def test_a_button_asks_first(admin_client, letter, button):
    response = admin_client.get(f"{LETTERS}{letter.pk}/{button}/")

    assert response.status_code == 200
    assert "csrfmiddlewaretoken" in response.content.decode()
    letter.refresh_from_db()
    assert letter.state == DeadLetter.State.OPEN


def test_confirming_redrive_queues_the_job_and_closes_the_letter(admin_client, letter):
    response = admin_client.post(f"{LETTERS}{letter.pk}/redrive/", follow=True)

    assert f"Dead letter {letter.pk} redriven" in response.content.decode()
    letter.refresh_from_db()
    assert (letter.state, letter.resolved_by) == (DeadLetter.State.REDRIVEN, "admin")
    assert Job.objects.get(pk=letter.job_id).status == JobStatus.QUEUED


def test_confirming_discard_closes_the_letter_and_the_job_stays_failed(admin_client, letter):
    response = admin_client.post(f"{LETTERS}{letter.pk}/discard/", follow=True)

    assert f"Dead letter {letter.pk} discarded" in response.content.decode()
    letter.refresh_from_db()
    assert letter.state == DeadLetter.State.DISCARDED
    # Every failed job keeps a dead letter: discard closes it, never removes it.
    assert Job.objects.get(pk=letter.job_id).status == JobStatus.FAILED
    assert DeadLetter.objects.filter(job_id=letter.job_id).exists()


def test_a_viewer_sees_no_action_and_no_button(viewer_client, letter):
    listing = viewer_client.get(LETTERS).content.decode()
    content = viewer_client.get(f"{LETTERS}{letter.pk}/change/").content.decode()

    assert 'value="redrive"' not in listing
    assert 'value="discard"' not in listing
    assert f"{LETTERS}{letter.pk}/redrive/" not in content


@pytest.mark.parametrize("button", ["redrive", "discard"])
def test_a_viewer_gets_403_from_a_button_and_nothing_changes(viewer_client, letter, button):
    asked = viewer_client.get(f"{LETTERS}{letter.pk}/{button}/")
    posted = viewer_client.post(f"{LETTERS}{letter.pk}/{button}/")
    listed = viewer_client.post(LETTERS, {"action": button, "_selected_action": [letter.pk], "index": 0})

    assert (asked.status_code, posted.status_code) == (403, 403)
    assert listed.status_code in (200, 302)
    letter.refresh_from_db()
    assert letter.state == DeadLetter.State.OPEN
    assert Job.objects.get(pk=letter.job_id).status == JobStatus.FAILED


def test_the_letter_list_shows_the_job_as_a_short_id_linked_to_its_page(admin_client, letter):
    content = admin_client.get(LETTERS).content.decode()

    assert f'href="/admin/jobs/job/{letter.job_id}/change/"' in content
    assert f">{str(letter.job_id)[:8]}</span>" in content
