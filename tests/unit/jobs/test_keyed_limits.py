"""Keyed limits (Kind.limit_per): a kind's concurrency and rate limit counted per owner or per
value of a payload field, each key in Redis keys of its own (apps.jobs.flow), found by the
worker before its claim (workers.runtime._pass_gates) with one query for keyed kinds only."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from apps.core.redis import key as redis_key
from apps.core.redis import redis_client
from apps.jobs import flow, selectors
from apps.jobs.models import Job
from apps.jobs.registry import Kind, registry
from apps.jobs.serializers import KindOutput
from tests.factories import JobFactory, UserFactory
from workers import runtime
from workers.outcomes import Outcome

TENANT_SCHEMA = {"type": "object", "properties": {"tenant": {"type": "string"}, "seconds": {"type": "number"}}}


def handler(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {}


def keyed(per: str | None = "owner", **options: Any) -> Kind:
    """A kind of a name of its own, so no other test's Redis keys are shared."""
    options.setdefault("concurrency", 1)
    return Kind(
        name=f"testing.keyed_{uuid.uuid4().hex[:8]}", handler=handler, schema=TENANT_SCHEMA, limit_per=per, **options
    )


# --- declaration ------------------------------------------------------------------------------


def test_a_kind_keys_its_limits_by_owner_or_by_a_payload_field_of_its_schema():
    assert keyed("owner").limit_per == "owner"
    assert keyed("payload.tenant").limit_per == "payload.tenant"
    assert keyed(None).limit_per is None


@pytest.mark.parametrize(
    ("per", "options", "says"),
    [
        ("payload.customer", {}, "'customer', not in the schema"),
        ("payload.tenant.id", {}, "top-level field"),
        ("payload.", {}, "top-level field"),
        ("tenant", {}, "top-level field"),
        ("Owner", {}, "top-level field"),
        ("owner", {"concurrency": None}, "no rate_limit or concurrency"),
    ],
)
def test_a_kind_refuses_a_limit_key_it_cannot_count_by(per, options, says):
    with pytest.raises(ValueError, match=says):
        keyed(per, **options)


def test_a_kind_without_properties_in_its_schema_cannot_key_by_a_payload_field():
    with pytest.raises(ValueError, match="not in the schema"):
        Kind(name="testing.x", handler=handler, schema={"type": "object"}, concurrency=1, limit_per="payload.tenant")


def test_describe_and_the_catalogue_show_the_limit_key():
    k = keyed("payload.tenant", rate_limit="10/s")
    described = k.describe()
    assert (described["concurrency"], described["rate_limit"], described["limit_per"]) == (1, "10/s", "payload.tenant")
    assert KindOutput(described).data["limit_per"] == "payload.tenant"
    assert KindOutput(keyed(None).describe()).data["limit_per"] is None


@pytest.mark.django_db
def test_the_kinds_endpoint_lists_a_keyed_kind_with_its_limit_key(api):
    k = keyed("owner", rate_limit="5/s")
    registry.register(k)
    try:
        kinds = {entry["name"]: entry for entry in api.get("/api/v1/kinds").json()["kinds"]}
    finally:
        registry._kinds.pop(k.name)
    assert (kinds[k.name]["limit_per"], kinds[k.name]["concurrency"]) == ("owner", 1)
    assert kinds["diagnostics.noop"]["limit_per"] is None


# --- keys ------------------------------------------------------------------------------------


def test_a_short_plain_value_is_its_own_key_and_a_missing_one_is_the_empty_key():
    assert flow.limit_key(42) == "42"
    assert flow.limit_key("acme-corp_1.eu") == "acme-corp_1.eu"
    assert flow.limit_key(None) == ""


@pytest.mark.parametrize("value", ["", "a:b", "x" * 65, "new\nline", "ü", "#abc", "a b", "{}", "\ud800"])
def test_any_other_value_is_hashed_into_a_bounded_key_without_separators(value):
    key = flow.limit_key(value)
    assert key.startswith("#")
    assert len(key) == 33
    assert ":" not in key
    assert key.isascii()
    assert key.isprintable()
    assert key != flow.limit_key(value + "!")


def test_keys_of_different_values_differ():
    values = ["a", "A", "", "a:b", "a b", "x" * 65, "x" * 66, "#a", "7"]
    assert len({flow.limit_key(v) for v in values}) == len(values)


# --- Redis ----------------------------------------------------------------------------------


def test_one_keys_concurrency_slots_never_use_up_anothers():
    name = f"testing.slots_{uuid.uuid4().hex[:8]}"
    a = flow.concurrency_acquire(name, 1, lease_seconds=30, key="a")
    assert a.allowed
    assert a.slot.key == redis_key(f"concurrency:{name}:a")
    assert not flow.concurrency_acquire(name, 1, lease_seconds=30, key="a").allowed
    b = flow.concurrency_acquire(name, 1, lease_seconds=30, key="b")
    assert b.allowed
    assert b.slot.key == redis_key(f"concurrency:{name}:b")
    # The kind's own count (a kind without limit_per) is apart from every key's.
    assert flow.concurrency_acquire(name, 1, lease_seconds=30).slot.key == redis_key(f"concurrency:{name}")

    flow.concurrency_release(a.slot)
    assert flow.concurrency_acquire(name, 1, lease_seconds=30, key="a").allowed


def test_a_slot_is_renewed_under_its_own_key():
    name = f"testing.renew_{uuid.uuid4().hex[:8]}"
    slot = flow.concurrency_acquire(name, 1, lease_seconds=1, key="a").slot
    before = redis_client().zscore(slot.key, slot.token)
    flow.concurrency_renew(slot, lease_seconds=60)
    assert redis_client().zscore(slot.key, slot.token) > before + 50
    assert redis_client().zcard(redis_key(f"concurrency:{name}")) == 0


def test_one_keys_rate_limit_never_slows_another():
    name = f"testing.rate_{uuid.uuid4().hex[:8]}"
    assert flow.rate_acquire(name, "1/m", key="a").allowed
    refused = flow.rate_acquire(name, "1/m", key="a")
    assert not refused.allowed
    assert refused.retry_in > 50
    assert flow.rate_acquire(name, "1/m", key="b").allowed
    assert flow.rate_acquire(name, "1/m", key="").allowed
    assert redis_client().exists(redis_key(f"rate:{name}:a"), redis_key(f"rate:{name}:b")) == 2


# --- the worker's gates ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_kind_without_a_limit_key_costs_its_gates_no_query(django_assert_num_queries):
    k = keyed(None, rate_limit="100/s")
    job = JobFactory()
    with django_assert_num_queries(0):
        slot = runtime._pass_gates(k, str(job.id))
    assert slot.key == redis_key(f"concurrency:{k.name}")
    runtime._release(k, slot)


@pytest.mark.django_db
def test_a_kind_keyed_by_owner_reads_the_owner_in_one_query(django_assert_num_queries):
    k = keyed("owner", rate_limit="100/s")
    job = JobFactory()
    with django_assert_num_queries(1):
        slot = runtime._pass_gates(k, str(job.id))
    assert slot.key == redis_key(f"concurrency:{k.name}:{job.owner_id}")
    runtime._release(k, slot)
    assert redis_client().zcard(slot.key) == 0


@pytest.mark.django_db
def test_two_owners_each_get_a_slot_while_one_owners_second_job_is_deferred():
    k = keyed("owner")
    alice, bob = UserFactory(), UserFactory()
    first, second, theirs = JobFactory(owner=alice), JobFactory(owner=alice), JobFactory(owner=bob)

    assert isinstance(runtime._pass_gates(k, str(first.id)), flow.Slot)
    assert isinstance(runtime._pass_gates(k, str(theirs.id)), flow.Slot)
    deferred = runtime._pass_gates(k, str(second.id))

    assert isinstance(deferred, Outcome)
    assert deferred.status == "deferred"
    second.refresh_from_db()
    assert second.status == "queued"
    assert second.attempts == 0
    assert second.run_at is not None


@pytest.mark.django_db
def test_a_kind_keyed_by_a_payload_field_counts_each_value_apart_and_a_missing_one_together():
    k = keyed("payload.tenant", concurrency=None, rate_limit="1/m")
    jobs = [JobFactory(payload=p) for p in ({"tenant": "a"}, {"tenant": "b"}, {}, {"tenant": None}, {"tenant": "a"})]
    outcomes = [runtime._pass_gates(k, str(job.id)) for job in jobs]
    # a, b and the missing field pass; null shares the missing field's key; the second a waits.
    assert outcomes[:3] == [None, None, None]
    assert [o.status for o in outcomes[3:]] == ["deferred", "deferred"]
    assert redis_client().exists(redis_key(f"rate:{k.name}:")) == 1


@pytest.mark.django_db
def test_the_limit_value_is_the_fields_text_without_loading_the_payload(django_assert_num_queries):
    job = JobFactory(payload={"tenant": 7, "blob": "x" * 10_000, "deep": {"b": 1}})
    with django_assert_num_queries(1) as captured:
        assert selectors.job_limit_value(job_id=job.id, payload_field="tenant") == "7"
    assert "blob" not in captured.captured_queries[0]["sql"]
    assert selectors.job_limit_value(job_id=job.id, payload_field="deep") == '{"b": 1}'
    assert selectors.job_limit_value(job_id=job.id, payload_field="missing") is None
    assert selectors.job_limit_value(job_id=job.id, payload_field=None) == job.owner_id


@pytest.mark.django_db
def test_a_job_that_is_gone_passes_its_gates_and_is_left_to_the_claim():
    k = keyed("owner")
    job = JobFactory()
    job_id = str(job.id)
    Job.objects.filter(id=job_id).delete()
    assert runtime._pass_gates(k, job_id) is None
