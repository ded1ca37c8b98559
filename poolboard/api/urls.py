from django.urls import path

from . import views

app_name = "api"
urlpatterns = [
    path("services/", views.services, name="services"),
]
