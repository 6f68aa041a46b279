"""Pausing and resuming a queue or a kind from the admin's operations dashboard: a button
opens a confirmation page saying what will happen, and its POST calls the service
(apps.jobs.pauses). Staff with the change permission on pauses only."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.core.errors import NotFound
from apps.jobs import pauses
from apps.jobs.models import Pause

ACTIONS = {
    (Pause.Target.QUEUE, "pause"): pauses.queue_pause,
    (Pause.Target.QUEUE, "resume"): pauses.queue_resume,
    (Pause.Target.KIND, "pause"): pauses.kind_pause,
    (Pause.Target.KIND, "resume"): pauses.kind_resume,
}


def pause_confirm(request: HttpRequest, target: str, name: str, action: str) -> HttpResponse:
    service = ACTIONS.get((target, action))
    if service is None:
        raise Http404("No such action.")
    if not request.user.has_perm("jobs.change_pause"):
        raise PermissionDenied
    try:
        state = pauses.pause_state(target_type=target, name=name)
    except NotFound as exc:
        raise Http404(exc.message) from None
    if request.method == "POST":
        service(name=name, actor=request.user.get_username())
        done = "paused" if action == "pause" else "resumed"
        messages.success(request, f"The {target} {name} is {done}.")
        return HttpResponseRedirect(reverse("ops_dashboard"))
    context = {
        **admin.site.each_context(request),
        "title": f"{action.capitalize()} the {target} {name}?",
        "target": target,
        "name": name,
        "action": action,
        "state": state,
    }
    request.current_app = admin.site.name
    return TemplateResponse(request, "admin/ops/pause_confirm.html", context)


pause_confirm_view = admin.site.admin_view(pause_confirm)
