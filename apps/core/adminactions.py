"""Buttons on an admin change page (Retry, Cancel, Redrive, Discard) that act on that one
object through the same service as the list action, each behind a confirmation page:
GET /admin/<app>/<model>/<id>/<action>/ asks, a POST of that page (with its CSRF token) acts,
then the change page says what happened. A button shows only when the action applies to the
object's state and the user holds the model's change permission; the view checks both again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse


@dataclass(frozen=True)
class Outcome:
    """What an action did, as the message the change page shows after it."""

    message: str
    level: int = messages.SUCCESS


@dataclass(frozen=True)
class ObjectAction:
    name: str  # the URL's last part, and the button's id: "retry"
    label: str  # the button: "Retry"
    question: str  # the confirmation page's question, formatted with {object}
    applies: Callable[[Any], bool]  # whether the object's state allows it (the button shows)
    perform: Callable[[Any, str], Outcome]  # (object, actor) -> what happened
    not_applicable: str = "This action does not apply to {object} in its present state."


class ObjectActionsMixin(admin.ModelAdmin):
    """Give a ModelAdmin `object_actions`. Its change page becomes read-only for everyone
    (no Save buttons; a POST to it is refused): every change goes through an action. An admin
    whose form saves through the services too sets `read_only_pages = False`."""

    object_actions: tuple[ObjectAction, ...] = ()
    read_only_pages = True
    change_form_template = "admin/object_actions_change_form.html"
    object_action_template = "admin/object_action_confirm.html"

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        own = [
            path(
                f"<path:object_id>/{action.name}/",
                self.admin_site.admin_view(partial(self.object_action_view, action=action)),
                name=f"{opts.app_label}_{opts.model_name}_{action.name}",
            )
            for action in self.object_actions
        ]
        return own + super().get_urls()

    def object_action_url(self, obj: Model, action: ObjectAction) -> str:
        opts = self.opts
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_{action.name}",
            args=[quote(obj.pk)],
            current_app=self.admin_site.name,
        )

    def available_object_actions(self, request: HttpRequest, obj: Model) -> list[dict[str, str]]:
        if not self.has_change_permission(request, obj):
            return []
        return [
            {"name": a.name, "label": a.label, "url": self.object_action_url(obj, a)}
            for a in self.object_actions
            if a.applies(obj)
        ]

    def object_action_view(self, request: HttpRequest, object_id: str, action: ObjectAction) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        opts = self.opts
        change_url = reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)], current_app=self.admin_site.name
        )
        if not action.applies(obj):
            self.message_user(request, action.not_applicable.format(object=obj), messages.WARNING)
            return HttpResponseRedirect(change_url)
        if request.method == "POST":
            outcome = action.perform(obj, request.user.get_username())
            self.message_user(request, outcome.message, outcome.level)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.label}: are you sure?",
            "subtitle": str(obj),
            "object": obj,
            "opts": opts,
            "action": action,
            "question": action.question.format(object=obj),
            "change_url": change_url,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.object_action_template, context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST" and self.read_only_pages:
            raise PermissionDenied  # read-only: the buttons above the page are the way to change it
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Model | None = None,
    ) -> HttpResponse:
        if self.read_only_pages:
            context.update(
                show_save=False, show_save_and_continue=False, show_save_and_add_another=False, show_delete=False
            )
        context["object_actions"] = self.available_object_actions(request, obj) if obj is not None else []
        return super().render_change_form(request, context, add, change, form_url, obj)
