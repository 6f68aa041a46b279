"""Every environment variable the settings read is described once, in docs/settings.md, and
listed in .env.example. The variables are found by parsing config/ (not by importing it), so a
new env_* call is caught whatever its default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ENV_PARSERS = {"env_str", "env_int", "env_float", "env_bool", "env_list"}


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def variables_read(source: str) -> set[str]:
    """The names a module reads from the environment: env_str("X") and its siblings,
    os.environ.get("X"), os.getenv("X"), os.environ["X"] and "X" in os.environ.
    os.environ.setdefault (config/celery.py's DJANGO_SETTINGS_MODULE) writes, so it is not one."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            is_parser = called in ENV_PARSERS
            is_get = isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value)
            is_getenv = (
                isinstance(func, ast.Attribute)
                and func.attr == "getenv"
                and isinstance(func.value, ast.Name)
                and func.value.id == "os"
            )
            if (is_parser or is_get or is_getenv) and node.args:
                name = _literal(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value) and isinstance(node.ctx, ast.Load):
            name = _literal(node.slice)
        elif isinstance(node, ast.Compare) and any(_is_os_environ(c) for c in node.comparators):
            name = _literal(node.left)
        if name:
            names.add(name)
    return names


def config_variables() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "config").rglob("*.py")):
        names |= variables_read(path.read_text())
    return names


def documented_variables() -> set[str]:
    """The first column of docs/settings.md's tables: | `NAME` | default | meaning |."""
    text = (ROOT / "docs" / "settings.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, re.MULTILINE))


def example_variables() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))


def test_the_parser_finds_every_way_config_reads_the_environment() -> None:
    source = """
import os
from config.env import env_bool, env_list
A = env_bool("A_BOOL", False)
B = env_list(
    "B_LIST",
    ["x"],
)
C = os.environ.get("C_GET")
D = os.environ["D_ITEM"]
E = "E_IN" in os.environ
F = os.getenv("F_GETENV")
os.environ.setdefault("NOT_READ", "x")
os.environ["NOT_READ_EITHER"] = "y"
"""
    assert variables_read(source) == {"A_BOOL", "B_LIST", "C_GET", "D_ITEM", "E_IN", "F_GETENV"}


def test_config_reads_the_variables_it_is_known_to_read() -> None:
    found = config_variables()
    # A guard against a parser that finds nothing: a few from each settings module.
    assert {"SECRET_KEY", "DATABASE_URL", "API_MAX_BODY_BYTES", "JOB_KIND_MODULES", "REDIS_URL", "LOG_FORMAT"} <= found
    assert len(found) > 60


def test_every_variable_read_in_config_is_described_in_docs_settings() -> None:
    missing = sorted(config_variables() - documented_variables())
    assert not missing, f"add these to a table in docs/settings.md: {missing}"


def test_every_variable_read_in_config_is_listed_in_env_example() -> None:
    missing = sorted(config_variables() - example_variables())
    assert not missing, f"add these to .env.example: {missing}"


def test_each_variable_is_described_once() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, re.MULTILINE)
    repeated = sorted({name for name in rows if rows.count(name) > 1})
    assert not repeated, f"described more than once in docs/settings.md: {repeated}"
