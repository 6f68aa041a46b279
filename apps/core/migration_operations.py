"""Migration operations shared by the apps."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db.migrations.operations import AddIndex, RemoveIndex


class _PlainOutsidePostgreSQL:
    """The CONCURRENTLY operation on PostgreSQL, so a table of millions keeps taking writes
    while an index builds or goes; `plain` elsewhere (the SQLite default of bin/up). The
    migration must say `atomic = False`."""

    plain: Any

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)  # type: ignore[misc]
        else:
            self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)  # type: ignore[misc]
        else:
            self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexWithoutLocking(_PlainOutsidePostgreSQL, AddIndexConcurrently):
    plain = AddIndex


class RemoveIndexWithoutLocking(_PlainOutsidePostgreSQL, RemoveIndexConcurrently):
    plain = RemoveIndex
