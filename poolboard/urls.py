from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from poolboard import selfmon

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", selfmon.healthz, name="healthz"),
    path("metrics", selfmon.metrics, name="metrics"),
    path("api/v1/", include("poolboard.api.urls")),
    path("", include("poolboard.dashboard.urls")),
]
