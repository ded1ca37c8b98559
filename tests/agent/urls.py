"""The project's URLs plus the agent's endpoint, for tests run before it is routed in api/urls.py.

Once `path("agent/reports", agent.reports, ...)` is in poolboard/api/urls.py this only repeats it.
"""

from django.urls import path

from poolboard.api.views import agent
from poolboard.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("api/v1/agent/reports", agent.reports), *project_urlpatterns]
