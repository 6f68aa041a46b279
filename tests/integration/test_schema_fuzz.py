"""Schemathesis fuzzes the API from its own OpenAPI schema, against a live server with a
client's token: no answer may be a server error, and every answer must fit the schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.factories import UserFactory

pytestmark = pytest.mark.integration

# Bounded: this many cases per operation and generation mode, each answered within the timeout.
MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 15
CHECKS = [not_a_server_error, response_schema_conformance]


def fuzz(operation: Any, mode: schemathesis.GenerationMode, headers: dict[str, str], answers: list[int]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,  # nothing written to .hypothesis/
        derandomize=True,  # the same cases every run: a failure here is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=REQUEST_TIMEOUT)
        answers.append(response.status_code)

    run()


def test_the_api_fits_its_schema_and_never_fails_with_a_server_error(live_server, transactional_db):
    token = Token.objects.create(user=UserFactory(username="fuzzer")).key
    headers = {"Authorization": f"Token {token}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json", headers=headers, timeout=30)

    failures: list[str] = []
    answers: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, headers, answers)
            except Unsatisfiable:
                continue  # nothing to break in this operation's input (GET /kinds, negatively)
            except Exception as exc:  # every operation is fuzzed; all failures are reported together
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")

    assert operations >= 10, f"only {operations} operations in the schema"
    assert len(answers) >= 10 * MAX_EXAMPLES, f"only {len(answers)} requests were made"
    assert {200, 201, 202, 400, 404} <= set(answers), sorted(set(answers))
    assert not failures, "\n\n".join(failures)
