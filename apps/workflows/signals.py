"""What happens to workflows, for the layers above (metrics)."""

from django.dispatch import Signal

# workflow_id, status: a workflow ended (succeeded, failed or cancelled); sent after the commit.
workflow_finished = Signal()
