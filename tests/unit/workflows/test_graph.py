"""A workflow's graph checks as plain functions: each refusal with its stable code."""

from __future__ import annotations

import pytest

from apps.core.errors import InvalidInput
from apps.workflows.graph import WORKFLOW_MAX_JOBS, find_cycle, graph_check


def job(ref: str, *deps: str) -> dict:
    return {"ref": ref, "kind": "diagnostics.noop", "payload": {}, "depends_on": list(deps)}


def refused(specs: list[dict]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        graph_check(specs)
    return caught.value


def test_it_accepts_a_diamond_in_any_order():
    graph = graph_check([job("d", "b", "c"), job("b", "a"), job("c", "a"), job("a")])
    assert graph == {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []}


def test_it_refuses_a_repeated_ref_naming_it():
    error = refused([job("a"), job("b"), job("a")])
    assert error.code == "duplicate_ref"
    assert error.details == {"refs": ["a"]}


def test_it_refuses_a_dependency_on_a_ref_that_is_not_in_the_workflow():
    error = refused([job("a"), job("b", "a", "nope")])
    assert error.code == "unknown_ref"
    assert error.details == [{"ref": "b", "unknown": ["nope"]}]


def test_it_refuses_a_cycle_naming_it():
    error = refused([job("a", "c"), job("b", "a"), job("c", "b"), job("free")])
    assert error.code == "workflow_cycle"
    cycle = error.details["cycle"]
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_a_job_depending_on_itself_is_a_cycle():
    assert refused([job("a", "a")]).code == "workflow_cycle"


def test_it_refuses_more_than_the_most_jobs():
    error = refused([job(f"j{i}") for i in range(WORKFLOW_MAX_JOBS + 1)])
    assert error.code == "workflow_too_large"


def test_a_long_chain_is_checked_without_recursion():
    chain = {f"j{i}": [f"j{i - 1}"] if i else [] for i in range(WORKFLOW_MAX_JOBS)}
    assert find_cycle(chain) is None
    chain["j0"] = [f"j{WORKFLOW_MAX_JOBS - 1}"]
    assert len(find_cycle(chain)) == WORKFLOW_MAX_JOBS + 1
