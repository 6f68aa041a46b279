"""The client web page: a Django template and one small script that calls the JSON API
with the session cookie. The page holds no job logic of its own; the API does it all."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie

from apps.jobs.registry import PRIORITIES


@never_cache
@login_required
@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "web/index.html", {"priorities": PRIORITIES})
