"""Every JSON endpoint under /api/v1/. An endpoint's code is in `views/<area>.py`."""

from django.urls import path

from .views import agent, alerts, databases, findings, services, sizing, statements

app_name = "api"
urlpatterns = [
    # views/services.py
    path("services/", services.services, name="services"),
    path("services/<str:name>/", services.service_detail, name="service"),
    path("services/<str:name>/series/", services.service_series, name="service-series"),
    # views/databases.py
    path("servers/", databases.servers, name="servers"),
    path("servers/<slug:name>/sessions/", databases.sessions, name="sessions"),
    path("databases/", databases.servers, name="databases"),  # the old address of servers/
    path("databases/<slug:name>/sessions/", databases.sessions),
    path("episodes/", databases.episodes, name="episodes"),
    path("queries/slow/", databases.slow_queries, name="slow-queries"),
    # views/statements.py: pg_stat_statements figures with the services whose pools they hold
    path("statements/", statements.statements, name="statements"),
    path("statements/<int:pk>/", statements.statement, name="statement"),
    # views/agent.py: poolboard.agent's held-connection reports (POST, bearer token)
    path("agent/reports", agent.reports, name="agent-reports"),
    # views/findings.py
    path("findings/", findings.findings, name="findings"),
    # views/sizing.py: ledgers and recommendations with their inputs
    path("sizing/", sizing.sizing, name="sizing"),
    # views/alerts.py: the alert instances the Alerts page shows, a rule's backtest
    path("alerts/", alerts.alerts, name="alerts"),
    path("alerts/rules/<int:pk>/backtest/", alerts.rule_backtest, name="alert-rule-backtest"),
]
