from __future__ import annotations

from collections.abc import Iterable

from apps.jobs.models import TERMINAL_STATUSES, Job
from tests.processes import wait_for


def wait_terminal(job_ids: Iterable[object], timeout: float) -> dict[str, Job]:
    """Wait until every job is terminal; fail naming the ones that are not."""
    ids = [str(i) for i in job_ids]

    def all_done() -> dict[str, Job] | None:
        jobs = {str(j.id): j for j in Job.objects.filter(id__in=ids)}
        pending = [i for i in ids if jobs[i].status not in TERMINAL_STATUSES]
        return None if pending else jobs

    try:
        return wait_for(all_done, timeout=timeout, interval=0.2, what=f"{len(ids)} jobs to finish")
    except AssertionError:
        states = dict(Job.objects.filter(id__in=ids).values_list("id", "status"))
        unfinished = {str(k): v for k, v in states.items() if v not in TERMINAL_STATUSES}
        sample = dict(list(unfinished.items())[:5])
        raise AssertionError(f"{len(unfinished)} of {len(ids)} jobs never finished, e.g. {sample}") from None
