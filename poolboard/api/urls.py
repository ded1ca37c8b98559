from django.urls import path

from . import views

app_name = "api"
urlpatterns = [
    path("services/", views.services, name="services"),
    path("services/<str:name>/", views.service_detail, name="service"),
    path("services/<str:name>/series/", views.service_series, name="service-series"),
]
