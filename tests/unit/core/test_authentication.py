"""The API's token lookup (apps.core.authentication): DRF's behaviour, in one prepared
statement on every authenticated request."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.core.authentication import TokenAuthentication
from tests.factories import UserFactory

KINDS = "/api/v1/kinds"


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.mark.django_db
def test_a_token_authenticates_its_user_with_one_query(django_assert_num_queries):
    user = UserFactory(email="a@example.com", is_staff=True)
    key = Token.objects.create(user=user).key

    with django_assert_num_queries(1):
        found, token = TokenAuthentication().authenticate_credentials(key)

    assert (found.pk, found.username, found.email, found.is_staff) == (user.pk, user.username, "a@example.com", True)
    assert (token.key, token.user_id, token.created) == (key, user.pk, Token.objects.get(key=key).created)
    assert token.user is found
    assert found._state.adding is False  # a saved row, as the ORM would hand it back
    found.first_name = "Ada"
    found.save(update_fields=["first_name"])
    user.refresh_from_db()
    assert user.first_name == "Ada"


@pytest.mark.django_db
def test_a_valid_token_reaches_the_api_and_a_bad_one_gets_drfs_401():
    key = Token.objects.create(user=UserFactory()).key
    assert _client(key).get(KINDS).status_code == 200

    response = _client("0" * 40).get(KINDS)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid token."
    assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_the_token_of_a_deactivated_user_stops_working_at_once():
    user = UserFactory()
    client = _client(Token.objects.create(user=user).key)
    assert client.get(KINDS).status_code == 200

    user.is_active = False
    user.save()
    response = client.get(KINDS)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "User inactive or deleted."


@pytest.mark.django_db
def test_a_deleted_token_stops_working_at_once():
    token = Token.objects.create(user=UserFactory())
    client = _client(token.key)
    assert client.get(KINDS).status_code == 200
    token.delete()
    assert client.get(KINDS).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_lookup_is_prepared_on_the_connection():
    """PostgreSQL parses and plans it once per connection, not once per request."""
    key = Token.objects.create(user=UserFactory()).key
    for _ in range(3):
        TokenAuthentication().authenticate_credentials(key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any('FROM "authtoken_token" t JOIN' in p for p in prepared), prepared
