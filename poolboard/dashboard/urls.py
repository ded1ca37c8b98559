"""Every HTML page of poolboard. A page's code is in `views/<area>.py`, its template in
`templates/<area>/` (README, "Layout")."""

from django.urls import path

from .views import alerts, databases, diagnosis, reports, services, sizing, statements

app_name = "dashboard"
urlpatterns = [
    # views/reports.py: the weekly capacity reports, the profile (subscriptions) and the unsubscribe link
    path("reports/", reports.report_list, name="reports"),
    path("reports/unsubscribe/<str:token>/", reports.unsubscribe, name="report-unsubscribe"),
    path("reports/<str:week>/", reports.report_detail, name="report"),
    path("reports/<str:week>/pdf/", reports.report_pdf, name="report-pdf"),
    path("reports/<str:week>/<slug:table>.csv", reports.report_csv, name="report-csv"),
    path("profile/", reports.profile, name="profile"),
    # views/services.py: the fleet overview and one service
    path("", services.overview, name="overview"),
    path("services/<int:pk>/", services.service_detail, name="service"),
    # views/databases.py: monitored servers, their sessions, episodes and slow queries
    path("services/<int:pk>/database-side/", databases.service_panel, name="service-database-side"),
    path("databases/", databases.database_list, name="databases"),
    path("servers/<slug:name>/", databases.server_detail, name="server"),
    path("databases/<slug:name>/", databases.database_redirect, name="database"),  # old address of a server page
    path("servers/<slug:name>/sessions/<int:pid>/signal/", databases.signal_session, name="signal-session"),
    # views/statements.py: statements from pg_stat_statements and the pools they hold
    path("queries/slow/", statements.slow_queries, name="slow-queries"),
    path("statements/<int:pk>/", statements.statement_detail, name="statement"),
    path("services/<int:pk>/statements/", statements.service_statements, name="service-statements"),
    path("queries/<str:fingerprint>/", databases.query_detail, name="query"),
    # views/diagnosis.py: verdicts (leak, saturation, slow queries, churn) with their evidence
    path("leaks/", diagnosis.leaks, name="leaks"),
    path("services/<int:pk>/diagnosis/", diagnosis.service_diagnosis, name="service-diagnosis"),
    # views/sizing.py: every server's connection ledger and each pool's recommended size
    path("sizing/", sizing.sizing, name="sizing"),
    path("sizing/sizing.csv", sizing.sizing_csv, name="sizing-csv"),
    path("services/<int:pk>/sizing/", sizing.service_sizing, name="service-sizing"),
    path("servers/<slug:name>/what-if/", sizing.server_what_if, name="server-what-if"),
    # views/alerts.py: what the alert rules see (firing, pending), each rule's state history
    path("alerts/", alerts.alerts, name="alerts"),
    path("alerts/<int:pk>/silence/", alerts.silence_alert, name="alert-silence"),
    path("alerts/rules/<int:pk>/", alerts.alert_rule, name="alert-rule"),
    path("services/<int:pk>/alerts/", alerts.service_alerts, name="service-alerts"),
]

# Which top-bar entry a page belongs to (the context processor marks it current).
NAV_SECTIONS = {
    "reports": "reports",
    "report": "reports",
    "report-pdf": "reports",
    "report-csv": "reports",
    "profile": "profile",
    "overview": "fleet",
    "service": "fleet",
    "service-database-side": "fleet",
    "databases": "databases",
    "server": "databases",
    "database": "databases",
    "signal-session": "databases",
    "slow-queries": "slow-queries",
    "query": "slow-queries",
    "statement": "slow-queries",
    "service-statements": "fleet",
    "leaks": "leaks",
    "service-diagnosis": "fleet",
    "sizing": "sizing",
    "sizing-csv": "sizing",
    "service-sizing": "fleet",
    "server-what-if": "databases",
    "alerts": "alerts",
    "alert-silence": "alerts",
    "alert-rule": "alerts",
    "service-alerts": "fleet",
}
