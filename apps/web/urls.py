from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from apps.web import views

app_name = "web"

urlpatterns = [
    path("", views.index, name="index"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="web/login.html", redirect_authenticated_user=True, next_page=reverse_lazy("web:index")
        ),
        name="login",
    ),
    # Django 5 signs out on POST only: the page's "Sign out" is a form with the CSRF token.
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page=reverse_lazy("web:login")), name="logout"),
]
