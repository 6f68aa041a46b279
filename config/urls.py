from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core import views as core_views
from apps.ops.admin import dashboard_view
from apps.ops.admin_pauses import pause_confirm_view

urlpatterns = [
    # Before the admin's own URLs: the operations dashboard (staff only, admin_view).
    path("admin/ops/dashboard/", dashboard_view, name="ops_dashboard"),
    path("admin/ops/dashboard/<str:target>/<str:name>/<str:action>/", pause_confirm_view, name="ops_pause"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("apps.jobs.urls")),
    path("api/v1/", include("apps.deadletters.urls")),
    path("api/v1/", include("apps.webhooks.urls")),
    path("api/v1/", include("apps.files.urls")),
    path("api/v1/", include("apps.workflows.urls")),
    path("api/v1/", include("apps.schedules.urls")),
    path("api/v1/", include("apps.ops.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("apps.ops.urls")),
    path("", include("apps.web.urls")),
]

handler400 = core_views.bad_request
handler403 = core_views.permission_denied
handler404 = core_views.page_not_found
handler500 = core_views.server_error
