from django.urls import path

from . import api

app_name = "databases-api"
urlpatterns = [
    path("databases/", api.databases, name="databases"),
    path("databases/<slug:name>/sessions/", api.sessions, name="sessions"),
    path("episodes/", api.episodes, name="episodes"),
    path("queries/slow/", api.slow_queries, name="slow-queries"),
]
