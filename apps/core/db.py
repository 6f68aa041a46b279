"""Database helpers shared by the hot paths."""

from __future__ import annotations

from typing import Any

from django.db import connection, connections


def prepared_cursor() -> Any:
    """A cursor for the statements that run on every request or every job (the token lookup,
    the claim, the finish). On PostgreSQL it binds parameters on the server, so psycopg
    prepares the statement after its second run (the prepare_threshold set in
    config.settings) and PostgreSQL stops parsing and planning it each time; Django's own
    cursors bind on the client and are never prepared. Wrapped like any Django cursor:
    errors, the query log and test query counts see it."""
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = ServerBindingCursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def connections_reopen_if_broken() -> None:
    """Drop this thread's database connections that broke (the server restarted, a failover,
    pg_terminate_backend) or outlived CONN_MAX_AGE, so the next query opens a new one.

    Django does this around each request, and Celery's fixup around each task; the control
    loop's long-lived process has neither, and without this keeps failing on a dead connection
    for good. A connection inside a transaction is left alone (closing it would break the
    transaction's owner)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
