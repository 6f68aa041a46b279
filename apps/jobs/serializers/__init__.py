"""The API's input and output shapes. Input and output are separate serializers, so what a
client sees is never an accident of the model. Every name is importable from here."""

from apps.jobs.serializers.batch import JobBatchItemOutput, JobBatchOutput
from apps.jobs.serializers.errors import ErrorDetailOutput, ErrorResponse
from apps.jobs.serializers.inputs import (
    BATCH_MAX_JOBS,
    JobBatchSubmitInput,
    JobListFilters,
    JobSubmitInput,
    StatusListField,
    StrictInput,
)
from apps.jobs.serializers.kinds import KindListOutput, KindOutput, KindRetryOutput, KindUniqueOutput
from apps.jobs.serializers.outputs import (
    JOB_FIELD_MAX_CHARS,
    LARGE_FIELDS,
    LIST_FIELD_MAX_CHARS,
    AttemptOutput,
    ErrorOutput,
    JobDetailOutput,
    JobListItemOutput,
    JobOutput,
    JobPageOutput,
    LinksOutput,
    ProgressOutput,
    list_include,
)

__all__ = [
    "BATCH_MAX_JOBS",
    "JOB_FIELD_MAX_CHARS",
    "LARGE_FIELDS",
    "LIST_FIELD_MAX_CHARS",
    "AttemptOutput",
    "ErrorDetailOutput",
    "ErrorOutput",
    "ErrorResponse",
    "JobBatchItemOutput",
    "JobBatchOutput",
    "JobBatchSubmitInput",
    "JobDetailOutput",
    "JobListFilters",
    "JobListItemOutput",
    "JobOutput",
    "JobPageOutput",
    "JobSubmitInput",
    "KindListOutput",
    "KindOutput",
    "KindRetryOutput",
    "KindUniqueOutput",
    "LinksOutput",
    "ProgressOutput",
    "StatusListField",
    "StrictInput",
    "list_include",
]
