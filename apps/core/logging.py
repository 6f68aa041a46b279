"""One JSON object per log line, in the web process and the worker alike, carrying the
request id and, in a worker, the job id and kind."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from apps.core import context

# Belt and braces: whatever a message says, a token or password never reaches the log.
_SECRETS = re.compile(r"(?i)(authorization:\s*(?:token|bearer|basic)\s+|token\s+|password=|secret=)[^\s,;&\"']+")


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: m.group(1) + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "process": record.process,
        }
        for key, var in (("request_id", context.request_id), ("job_id", context.job_id), ("kind", context.job_kind)):
            value = getattr(record, key, None) or var.get()
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)
