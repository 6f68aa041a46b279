"""The web process binds to loopback unless told otherwise (issue 14, item 6): gunicorn's
threads can be held by slow clients, so it is exposed only through a buffering proxy."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_procfiles_web_process_binds_to_loopback_by_default():
    (web,) = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")]

    bind = re.search(r"--bind\s+(\S+)", web)

    assert bind is not None
    assert bind.group(1).startswith("${WEB_BIND:-127.0.0.1}:")


def test_the_example_environment_keeps_loopback():
    lines = (ROOT / ".env.example").read_text().splitlines()

    assert "WEB_BIND=127.0.0.1" in lines
