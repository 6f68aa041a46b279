from django.urls import path

from apps.schedules import apis

urlpatterns = [
    path("schedules", apis.ScheduleListCreateApi.as_view(), name="schedule-list"),
    path("schedules/<uuid:schedule_id>", apis.ScheduleDetailApi.as_view(), name="schedule-detail"),
]
