"""Publishing (apps.jobs.publish): a submitted job crosses the broker as its id in JSON, and the
worker's side claims exactly what crossed."""

from __future__ import annotations

from apps.jobs import lifecycle
from tests.conftest import json_roundtrip
from tests.helpers.jobs import broker_messages, submitted


def test_a_published_job_crosses_the_broker_as_its_id_in_json(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = submitted(user, "diagnostics.sleep", {"seconds": 1}, priority="low")

    (message,) = [m for m in broker_messages("low") if m["args"] == [str(job.id)]]
    assert message["task"] == "diagnostics.sleep"
    assert message["kwargs"] == {}
    assert json_roundtrip(message["args"]) == [str(job.id)]
    # The worker's side accepts exactly what crossed the broker.
    c = lifecycle.job_claim(job_id=json_roundtrip(message["args"])[0], worker="w")
    assert c is not None
    assert json_roundtrip(c.payload) == {"seconds": 1}
