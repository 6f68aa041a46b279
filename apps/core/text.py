"""Text from outside (a handler's exception, a receiver's answer, a handler's result) made
fit for PostgreSQL before it is written.

PostgreSQL refuses two things a Python string can hold: NUL, in text columns ("text fields
cannot contain NUL") and in jsonb ("unsupported Unicode escape sequence" for \\u0000); and
lone surrogates, which do not encode as UTF-8 at all (psycopg raises before sending, and jsonb
refuses them as \\udXXX escapes). Either one made the write of a failure itself fail, so the
attempt was recorded as lost instead of as what it was. See
https://www.postgresql.org/docs/current/datatype-json.html (the \\u0000 note).
"""

from __future__ import annotations

import json
import re
from typing import Any

# A \u0000 escape in JSON text that is not a literal backslash followed by "u0000" (which
# JSON writes as \\u0000): preceded by an even number of backslashes.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def clean_text(value: str, limit: int | None = None) -> str:
    """`value` without NUL characters and with each lone surrogate replaced by U+FFFD (a
    surrogate pair becomes the character it encodes), cut to `limit` characters."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # UTF-16 joins a high and a low surrogate into their character; what is left alone
            # decodes as one replacement character each, so lengths (and limits) hold.
            value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value if limit is None else value[:limit]


def clean_json(value: Any) -> Any:
    """A JSON value (a handler's result, a step's result) with every string, keys included,
    passed through clean_text. Returns `value` itself when nothing needs cleaning, which one
    serialisation in C tells: the common case costs no walk. Raises TypeError, as json.dumps
    does, for a value that is not JSON."""
    text = json.dumps(value, ensure_ascii=False)  # NUL comes out as \u0000, surrogates raw
    if "\\u0000" not in text or not _NUL_ESCAPE.search(text):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return value
    return _walk(value)


def _walk(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {(clean_text(k) if isinstance(k, str) else k): _walk(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v) for v in value]
    return value
