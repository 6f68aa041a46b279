"""SSRF as an attacker tries it: only globally routable addresses may be called, however an
address is written (IPv4-mapped, 6to4, Teredo, NAT64), every URL a client gives is checked
when it is given, and an internal kind (webhook delivery) is not a client's to submit."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from apps.core.urlsafety import UnsafeURL, address_refusal, check_outbound_url
from apps.jobs import lifecycle
from apps.jobs.models import Job
from apps.jobs.registry import Kind, registry
from apps.webhooks.services import DELIVER_KIND

JOBS = "/api/v1/jobs"

# Not globally routable, each written as a client might: none may be called.
NOT_GLOBAL = [
    "http://100.64.0.1:8080/x",  # carrier-grade NAT
    "http://100.127.255.254/x",
    "http://192.0.0.8/x",  # IPv4 dummy address
    "http://192.0.0.170/x",  # NAT64 discovery
    "http://192.88.99.1/x",  # 6to4 relay anycast
    "http://198.18.0.1/x",  # benchmarking
    "http://224.0.0.1/x",  # multicast
    "http://240.0.0.1/x",  # reserved
    "http://255.255.255.255/x",
    "http://0.0.0.0/x",
    "http://127.0.0.1/x",
    "http://10.1.2.3/x",
    "http://[::1]/x",
    "http://[::]/x",
    "http://[fc00::1]/x",
    "http://[fe80::1]/x",
    "http://[ff02::1]/x",
    "http://[::ffff:10.0.0.1]/x",  # IPv4-mapped
    "http://[::ffff:100.64.0.1]/x",
    "http://[::127.0.0.1]/x",  # IPv4-compatible (deprecated)
    "http://[2002:a9fe:a9fe::]/x",  # 6to4 of 169.254.169.254
    "http://[2002:7f00:1::]/x",  # 6to4 of 127.0.0.1
    "http://[2002:0a00:0001::]/x",  # 6to4 of 10.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # Teredo whose client is 192.0.2.45
    "http://[64:ff9b::a9fe:a9fe]/x",  # NAT64 of 169.254.169.254
    "http://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::6440:1]/x",  # NAT64 of 100.64.0.1
    "http://[64:ff9b:1::a00:1]/x",  # local-use NAT64
    "http://[2001:db8::1]/x",  # documentation
]

PUBLIC = [
    "http://8.8.8.8/x",
    "https://1.1.1.1:8443/x",
    "http://[2606:4700:4700::1111]/x",
    "http://[::ffff:8.8.8.8]/x",
    "http://[2002:808:808::]/x",  # 6to4 of 8.8.8.8
    "http://[64:ff9b::808:808]/x",  # NAT64 of 8.8.8.8
]


@pytest.fixture
def no_private(settings: Any) -> Any:
    settings.WEBHOOK_ALLOW_PRIVATE = False
    return settings


@pytest.mark.parametrize("url", NOT_GLOBAL)
def test_an_address_that_is_not_globally_routable_is_refused(no_private, url):
    with pytest.raises(UnsafeURL):
        check_outbound_url(url)


@pytest.mark.parametrize("url", PUBLIC)
def test_a_globally_routable_address_is_allowed_in_any_form(no_private, url):
    assert check_outbound_url(url)


@pytest.mark.parametrize(
    "url", ["http://100.64.0.1:8080/x", "http://[2002:a9fe:a9fe::]/x", "http://192.88.99.1/x", "http://[64:ff9b::1]/x"]
)
def test_a_callback_url_that_is_not_globally_routable_is_refused_at_submit(api, no_private, url):
    response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}, "callback_url": url}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unsafe_callback_url"
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "169.254.10.1", "2002:a9fe:a9fe::", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"]
)
def test_metadata_and_link_local_stay_refused_in_any_form_when_private_addresses_are_allowed(settings, address):
    settings.WEBHOOK_ALLOW_PRIVATE = True

    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "192.168.1.2", "100.64.0.1", "::1", "fd12::1"])
def test_private_and_loopback_addresses_are_allowed_for_local_use(settings, address):
    settings.WEBHOOK_ALLOW_PRIVATE = True

    assert address_refusal(ipaddress.ip_address(address)) is None


# --- internal kinds ----------------------------------------------------------------------------

DELIVERY = {
    "kind": DELIVER_KIND,
    "payload": {
        "job_id": "00000000-0000-0000-0000-000000000001",
        "url": "http://127.0.0.1:9/x",
        "event": "job.finished",
    },
}


def assert_unknown_kind(error: dict[str, Any]) -> None:
    assert error["code"] == "unknown_kind"
    assert DELIVER_KIND not in error["details"]["known_kinds"]
    assert "diagnostics.noop" in error["details"]["known_kinds"]


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_client_cannot_submit_an_internal_kind(api, settings, allow_private):
    settings.WEBHOOK_ALLOW_PRIVATE = allow_private

    response = api.post(JOBS, DELIVERY, format="json")

    assert response.status_code == 400, response.content
    assert_unknown_kind(response.json()["error"])
    assert not Job.objects.exists()


def test_a_client_cannot_submit_an_internal_kind_with_an_idempotency_key(api):
    response = api.post(JOBS, DELIVERY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 400, response.content
    assert_unknown_kind(response.json()["error"])
    assert not Job.objects.exists()


def test_a_client_cannot_submit_an_internal_kind_in_a_batch(api):
    batch = {"jobs": [{"kind": "diagnostics.noop", "payload": {}}, DELIVERY]}

    response = api.post(f"{JOBS}/batch", batch, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [(e["index"], e["code"]) for e in error["details"]] == [(1, "unknown_kind")]
    assert not Job.objects.exists()


def test_an_internal_kind_with_a_bad_payload_answers_as_unknown_too(api):
    """Its schema's errors would say that it exists."""
    response = api.post(JOBS, {"kind": DELIVER_KIND, "payload": {"nope": 1}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_kind"


def test_the_catalogue_leaves_internal_kinds_out(api):
    response = api.get("/api/v1/kinds")

    names = {k["name"] for k in response.json()["kinds"]}
    assert DELIVER_KIND not in names
    assert "diagnostics.noop" in names


def test_the_platform_itself_still_submits_its_internal_kinds(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = lifecycle.job_submit(owner=user, kind=DELIVER_KIND, payload=DELIVERY["payload"])

    assert job.kind == DELIVER_KIND


def test_webhook_delivery_is_declared_internal():
    assert registry.get(DELIVER_KIND).internal


# --- URLs in a payload -------------------------------------------------------------------------


@pytest.fixture
def fetch_kind(monkeypatch: pytest.MonkeyPatch) -> str:
    """A client kind whose handler would call the payload's `target`."""
    registry.load()
    k = Kind(
        name="testing.fetch",
        handler=lambda ctx, payload: None,
        schema={"type": "object", "properties": {"target": {"type": "string"}}, "required": ["target"]},
        outbound_urls=("target",),
    )
    monkeypatch.setitem(registry._kinds, k.name, k)
    return k.name


@pytest.mark.parametrize("idempotency_key", [None, "k-2"])
def test_a_url_in_a_payload_is_checked_at_submit(api, no_private, fetch_kind, idempotency_key):
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    response = api.post(
        JOBS, {"kind": fetch_kind, "payload": {"target": "http://[2002:a9fe:a9fe::]/latest"}}, format="json", **headers
    )

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "unsafe_url"
    assert error["details"][0]["path"] == "target"
    assert not Job.objects.exists()


def test_a_url_in_a_batch_payload_is_checked_at_submit(api, no_private, fetch_kind):
    batch = {"jobs": [{"kind": fetch_kind, "payload": {"target": "http://100.64.0.1/"}}]}

    response = api.post(f"{JOBS}/batch", batch, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"][0]["code"] == "unsafe_url"


def test_a_public_url_in_a_payload_is_accepted(api, no_private, fetch_kind, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(JOBS, {"kind": fetch_kind, "payload": {"target": "http://8.8.8.8/"}}, format="json")

    assert response.status_code == 202, response.content
