"""The kind registry (apps.jobs.registry): what a kind may declare, the kinds found by name, and a
payload's errors against a kind's schema."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema.exceptions import SchemaError

from apps.jobs.registry import Kind, Registry, UnknownKind, registry

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}


def handler(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {}


def test_a_kind_refuses_an_unknown_priority():
    with pytest.raises(ValueError, match="priority must be one of"):
        Kind(name="t.k", handler=handler, schema=SCHEMA, priority="urgent")


@pytest.mark.parametrize(("soft", "hard"), [(10, 10), (10, 5)])
def test_a_kind_refuses_a_hard_time_limit_not_above_the_soft_one(soft, hard):
    with pytest.raises(ValueError, match="time_limit must exceed soft_time_limit"):
        Kind(name="t.k", handler=handler, schema=SCHEMA, soft_time_limit=soft, time_limit=hard)


def test_a_kind_refuses_zero_attempts():
    with pytest.raises(ValueError, match="max_attempts"):
        Kind(name="t.k", handler=handler, schema=SCHEMA, max_attempts=0)


@pytest.mark.parametrize("schema", [{"type": "no-such-type"}, {"properties": []}, {"minimum": "zero"}])
def test_a_kind_refuses_an_invalid_json_schema(schema):
    with pytest.raises(SchemaError):
        Kind(name="t.k", handler=handler, schema=schema)


def test_a_kind_with_no_queue_of_its_own_uses_the_priority_as_queue():
    shared = Kind(name="t.k", handler=handler, schema=SCHEMA)
    dedicated = Kind(name="t.k", handler=handler, schema=SCHEMA, queue="images")

    assert [shared.queue_for(p) for p in ("high", "default", "low")] == ["high", "default", "low"]
    assert dedicated.queue_for("high") == "images"


def test_the_registry_raises_unknown_kind_for_a_name_it_does_not_know():
    with pytest.raises(UnknownKind):
        registry.get("no.such.kind")
    assert "no.such.kind" not in registry
    assert "diagnostics.noop" in registry


def test_the_registry_loads_every_kind_module_named_in_settings():
    names = [k.name for k in registry]

    assert names == sorted(names)
    assert {"diagnostics.noop", "diagnostics.sleep", "diagnostics.flaky", "images.thumbnail"} <= set(names)
    assert registry.get("diagnostics.crash").max_attempts == 2  # DIAGNOSTICS_UNSAFE=1 in tests


def test_the_registry_refuses_two_kinds_with_one_name():
    r = Registry()
    r.register(Kind(name="t.k", handler=handler, schema=SCHEMA))
    r.register(Kind(name="t.k", handler=handler, schema=SCHEMA))  # the same declaration imported twice

    with pytest.raises(ValueError, match="declared twice"):
        r.register(Kind(name="t.k", handler=lambda ctx, payload: None, schema=SCHEMA))


def test_payload_errors_lists_every_error_with_its_path():
    k = registry.get("images.thumbnail")

    errors = k.payload_errors({"image_base64": 7, "sizes": [4, 16, 9000], "format": "gif", "extra": 1})

    assert [e["path"] for e in errors] == ["(root)", "format", "image_base64", "sizes/0", "sizes/2"]
    assert "extra" in errors[0]["message"]
    assert "9000" in errors[-1]["message"]
    assert k.payload_errors({"image_base64": "aGk=", "sizes": [16]}) == []
