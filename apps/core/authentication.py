"""API token authentication in one prepared statement.

DRF's TokenAuthentication looks the token up through the ORM
(`Token.objects.select_related("user").get(key=key)`): compiling that query is about a
millisecond of Python on every API request, several times what PostgreSQL spends answering
it. This is the same lookup, the same errors and the same (user, token) result, written once
as SQL and prepared on the connection (apps.core.db.prepared_cursor)."""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DatabaseError, connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

from apps.core.db import prepared_cursor


@functools.cache
def _lookup() -> tuple[str, list[str], list[str]]:
    user_model = get_user_model()
    token_fields = [f.attname for f in Token._meta.concrete_fields]
    user_fields = [f.attname for f in user_model._meta.concrete_fields]
    q = connection.ops.quote_name
    token_table, user_table = q(Token._meta.db_table), q(user_model._meta.db_table)
    columns = [f"t.{q(f.column)}" for f in Token._meta.concrete_fields]
    columns += [f"u.{q(f.column)}" for f in user_model._meta.concrete_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {token_table} t "
        f"JOIN {user_table} u ON u.{q(user_model._meta.pk.column)} = t.{q(Token._meta.get_field('user').column)} "
        f"WHERE t.{q(Token._meta.pk.column)} = %s"
    )
    return sql, token_fields, user_fields


def _fetch(sql: str, key: str) -> tuple[Any, ...] | None:
    with prepared_cursor() as cursor:
        cursor.execute(sql, [key])
        return cursor.fetchone()


def _token_row(sql: str, key: str) -> tuple[Any, ...] | None:
    """The token's row, by the request's first query, which doubles as the connection's health
    check.

    With CONN_HEALTH_CHECKS, Django sends `SELECT 1` on a reused connection before a request's
    first query, so that one the server dropped (a restart, a failover) is replaced instead of
    failing the request: a round trip of its own on every API request, with PostgreSQL's and
    this process's share of it. Here the lookup itself is the check: it runs unchecked, and
    when it fails Django's own test (is_usable) decides; a dead connection is closed and the
    lookup runs once more on a new one, as Django would have done, and any other error is
    raised as it was."""
    unchecked = (
        connection.connection is not None
        and connection.health_check_enabled
        and not connection.health_check_done
        and not connection.in_atomic_block
    )
    if not unchecked:
        return _fetch(sql, key)
    connection.health_check_done = True
    try:
        return _fetch(sql, key)
    except DatabaseError:
        if connection.is_usable():
            raise
    connection.close()
    return _fetch(sql, key)


# The schemes an API token may be sent under. `Token` is DRF's; `Bearer` (RFC 6750) is what
# most HTTP clients and API tools send for a token, and was answered "credentials were not
# provided", which sent people looking for a missing header. Both name the same token.
SCHEMES = (b"token", b"bearer")


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>` (or `Bearer <key>`), DRF's checks and errors, looked up
    with one prepared statement."""

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, Token] | None:
        auth = authentication.get_authorization_header(request).split()
        if not auth or auth[0].lower() not in SCHEMES:
            return None  # another scheme (or none): other authenticators, or 401 with WWW-Authenticate
        if len(auth) == 1:
            raise exceptions.AuthenticationFailed(_("Invalid token header. No credentials provided."))
        if len(auth) > 2:
            raise exceptions.AuthenticationFailed(_("Invalid token header. Token string should not contain spaces."))
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(
                _("Invalid token header. Token string should not contain invalid characters.")
            ) from None
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, Token]:
        sql, token_fields, user_fields = _lookup()
        row = _token_row(sql, key)
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        split = len(token_fields)
        user: Any = get_user_model().from_db(connection.alias, user_fields, list(row[split:]))
        token = Token.from_db(connection.alias, token_fields, list(row[:split]))
        token.user = user  # as select_related("user") would have it
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token
