"""The API's token lookup (apps.core.authentication): DRF's behaviour, in one prepared
statement on every authenticated request."""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.core import authentication
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


def _connection_due_a_health_check() -> None:
    """As Django leaves a reused connection at the start of a request (close_old_connections):
    open, with its health check to do before the request's first query."""
    connection.ensure_connection()
    connection.health_check_done = False


@pytest.mark.django_db(transaction=True)
def test_the_lookup_is_the_requests_health_check_so_no_select_1_goes_first(monkeypatch):
    """The lookup is the request's first query: a live connection answers it with no SELECT 1
    of Django's health check in front, a round trip saved on every API request."""
    user = UserFactory()
    key = Token.objects.create(user=user).key
    checks = []
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(1) or True)
    _connection_due_a_health_check()

    found, _ = TokenAuthentication().authenticate_credentials(key)

    assert found.pk == user.pk
    assert checks == []
    assert connection.health_check_done


@pytest.mark.django_db(transaction=True)
def test_a_token_request_on_a_connection_the_server_dropped_is_answered_on_a_new_one():
    """What the health check was for: PostgreSQL restarted (here, the connection's backend
    terminated) while the connection idled between requests. The request still authenticates,
    on a new connection, instead of failing."""
    user = UserFactory()
    key = Token.objects.create(user=user).key
    _connection_due_a_health_check()
    old_pid = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [old_pid])
    _connection_due_a_health_check()

    found, _ = TokenAuthentication().authenticate_credentials(key)

    assert found.pk == user.pk
    assert connection.connection.info.backend_pid != old_pid


@pytest.mark.django_db(transaction=True)
def test_an_error_of_the_lookup_on_a_live_connection_is_raised_not_retried(monkeypatch):
    """Only a dead connection is replaced; any other database error is the request's."""
    key = Token.objects.create(user=UserFactory()).key
    _connection_due_a_health_check()
    calls = []

    def failing(sql: str, key: str) -> None:
        calls.append(1)
        raise OperationalError("canceling statement due to statement timeout")

    monkeypatch.setattr(authentication, "_fetch", failing)

    with pytest.raises(OperationalError):
        TokenAuthentication().authenticate_credentials(key)
    assert calls == [1]
