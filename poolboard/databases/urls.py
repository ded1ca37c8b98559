from django.urls import path

from . import views

app_name = "databases"
urlpatterns = [
    path("databases/", views.database_list, name="list"),
    path("databases/<slug:name>/", views.database_detail, name="database"),
    path("databases/<slug:name>/sessions/<int:pid>/signal/", views.signal_session, name="signal"),
    path("queries/slow/", views.slow_queries, name="slow-queries"),
    path("queries/<str:fingerprint>/", views.query_detail, name="query"),
    path("services/<int:pk>/database-side/", views.service_panel, name="service-panel"),
]
