"""A workflow's graph checks, before anything is written: refs unique, every dependency a
ref of the same workflow, no cycles. Each refusal has its own stable code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apps.core.errors import InvalidInput

# The most jobs one workflow may hold (a batch's bound: one transaction, one COPY).
WORKFLOW_MAX_JOBS = 1000


def graph_check(specs: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Each ref's dependencies (deduplicated, in the order given), once the graph is sound."""
    if not specs:
        raise InvalidInput("A workflow needs at least one job.", code="invalid_workflow")
    if len(specs) > WORKFLOW_MAX_JOBS:
        raise InvalidInput(
            f"A workflow holds at most {WORKFLOW_MAX_JOBS} jobs; this one has {len(specs)}.",
            code="workflow_too_large",
            details={"max_jobs": WORKFLOW_MAX_JOBS, "jobs": len(specs)},
        )
    graph: dict[str, list[str]] = {}
    duplicates: list[str] = []
    for spec in specs:
        ref = spec["ref"]
        if ref in graph:
            duplicates.append(ref)
        graph[ref] = list(dict.fromkeys(spec.get("depends_on") or ()))
    if duplicates:
        names = sorted(set(duplicates))
        raise InvalidInput(
            f"Each job's ref must be unique in its workflow; repeated: {', '.join(map(repr, names))[:200]}.",
            code="duplicate_ref",
            details={"refs": names},
        )
    unknown = [
        {"ref": ref, "unknown": [d for d in deps if d not in graph]}
        for ref, deps in graph.items()
        if any(d not in graph for d in deps)
    ]
    if unknown:
        first = unknown[0]
        raise InvalidInput(
            f"Job {first['ref']!r} depends on {first['unknown'][0]!r}, which is not a ref of this workflow.",
            code="unknown_ref",
            details=unknown,
        )
    cycle = find_cycle(graph)
    if cycle:
        raise InvalidInput(
            f"The workflow has a cycle: {' -> '.join(cycle)[:300]}. A job cannot wait for itself.",
            code="workflow_cycle",
            details={"cycle": cycle},
        )
    return graph


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a] (each depends on the next), or None. Iterative depth-first
    search: a chain of 1,000 jobs would pass Python's recursion limit."""
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start: 0}
        branches = [iter(graph[start])]
        while branches:
            step = next(branches[-1], None)
            if step is None:
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                branches.pop()
                continue
            if step in on_path:
                return [*path[on_path[step] :], step]
            if step in done:
                continue
            on_path[step] = len(path)
            path.append(step)
            branches.append(iter(graph[step]))
    return None
