"""`manage.py issue_token USERNAME`: the user when missing, its token on the last line."""

from __future__ import annotations

import io

from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory


def issue_token(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def last_line(output: str) -> str:
    return output.rstrip("\n").split("\n")[-1]


def test_it_creates_the_user_and_prints_its_token_last(db):
    out, err = issue_token("bob")

    user = get_user_model().objects.get(username="bob")
    assert last_line(out) == Token.objects.get(user__username="bob").key
    assert len(last_line(out)) == 40
    assert not user.is_staff
    assert not user.has_usable_password()
    assert "created user bob" in err


def test_running_it_twice_prints_the_same_token(db):
    first, _ = issue_token("bob")
    second, err = issue_token("bob")

    assert last_line(first) == last_line(second)
    assert get_user_model().objects.filter(username="bob").count() == 1
    assert Token.objects.filter(user__username="bob").count() == 1
    assert err == ""  # nothing was created the second time


def test_it_issues_a_token_for_an_existing_user_and_keeps_their_password(db):
    alice = UserFactory(username="alice")
    alice.set_password("correct horse battery staple")
    alice.save()

    out, _ = issue_token("alice")

    alice.refresh_from_db()
    assert last_line(out) == Token.objects.get(user=alice).key
    assert alice.check_password("correct horse battery staple")


def test_staff_makes_the_user_staff(db):
    issue_token("carol", "--staff")

    assert get_user_model().objects.get(username="carol").is_staff


def test_staff_promotes_an_existing_user_without_a_new_token(db):
    plain, _ = issue_token("dave")

    promoted, _ = issue_token("dave", "--staff")

    assert get_user_model().objects.get(username="dave").is_staff
    assert last_line(plain) == last_line(promoted)


def test_the_printed_token_authenticates_against_the_api(db):
    out, _ = issue_token("erin")
    client = APIClient()

    anonymous = client.get("/api/v1/jobs")
    client.credentials(HTTP_AUTHORIZATION=f"Token {last_line(out)}")
    authenticated = client.get("/api/v1/jobs")

    assert anonymous.status_code == 401
    assert authenticated.status_code == 200
    assert authenticated.json()["results"] == []
