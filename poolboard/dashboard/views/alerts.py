"""Pages of the alerts: what is firing or pending, one rule with its state history, the
service page's alerts panel, and the "silence 1 h" button.

Rules, instances and transitions are written by poolboard.alerts (evaluation); silences by
poolboard.notify or the button here. These views only read them, plus that one POST.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from poolboard.alerts.models import AlertInstance, AlertRule, AlertTransition
from poolboard.fleet.models import Service
from poolboard.lib import alerting
from poolboard.notify.models import Silence
from poolboard.notify.silences import active_silences, silenced_by

PAGE_SIZE = 50
HISTORY_PAGE_SIZE = 100
ACTIVE_STATES = (alerting.FIRING, alerting.PENDING)
SILENCE_FOR = timedelta(hours=1)

# Most severe first (AlertRule.severity's choices).
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
SORTS = {
    # firing first, then pending; inside each the longest active first
    "state": ["state_rank", "active_since", "id"],
    "since": ["active_since", "id"],
    "severity": ["severity_rank", "state_rank", "active_since", "id"],
    "rule": ["rule__name", "state_rank", "active_since", "id"],
    "service": ["service__name", "state_rank", "active_since", "id"],
}
SORT_LABELS = (("state", "firing first"), ("since", "longest active"), ("severity", "severity"), ("rule", "rule"), ("service", "service"))


def _partial(request, template: str, name: str) -> str:
    if request.htmx and not request.htmx.history_restore_request:
        return f"{template}#{name}"
    return template


def active_instances():
    """Pending and firing instances with what the tables show, sortable by SORTS' keys."""
    return (
        AlertInstance.objects.filter(state__in=ACTIVE_STATES)
        .select_related("rule", "service", "server")
        .prefetch_related("rule__overrides")
        .annotate(
            state_rank=Case(When(state=alerting.FIRING, then=Value(0)), default=Value(1), output_field=IntegerField()),
            severity_rank=Case(
                *[When(rule__severity=name, then=Value(rank)) for name, rank in SEVERITY_RANK.items()],
                default=Value(9),
                output_field=IntegerField(),
            ),
        )
    )


def alert_rows(instances, now) -> list[dict]:
    """One row per instance: the instance, the silence that mutes it (if any), its threshold."""
    rows = []
    silences = active_silences(now)  # one query; matched in Python per alert
    for instance in instances:
        rows.append(
            {
                "alert": instance,
                "silence": silenced_by(instance.labels or {}, now, silences),
                "threshold": instance.rule.threshold_for(instance.service_id),
            }
        )
    return rows


@require_GET
@vary_on_headers("HX-Request")
def alerts(request):
    """Every pending or firing alert, firing first; it polls itself."""
    now = timezone.now()
    sort = request.GET.get("sort", "state")
    if sort not in SORTS:
        sort = "state"
    instances = active_instances().order_by(*SORTS[sort])
    page = Paginator(instances, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = {state: 0 for state in ACTIVE_STATES}
    for state in AlertInstance.objects.filter(state__in=ACTIVE_STATES).values_list("state", flat=True):
        counts[state] += 1
    context = {
        "rows": alert_rows(page.object_list, now),
        "page": page,
        "sort": sort,
        "sort_labels": SORT_LABELS,
        "counts": counts,
        "rules": AlertRule.objects.count(),
        "can_silence": request.user.has_perm("notify.add_silence"),
        "now": now,
    }
    return render(request, _partial(request, "alerts/list.html", "alerts-table"), context)


@require_POST
def silence_alert(request, pk: int):
    """"Silence 1 h": a Silence whose matchers are the alert's labels, from now for an hour."""
    if not request.user.has_perm("notify.add_silence"):
        raise PermissionDenied
    instance = get_object_or_404(AlertInstance.objects.select_related("rule"), pk=pk)
    now = timezone.now()
    matchers = [{"name": k, "value": str(v), "isRegex": False, "isEqual": True} for k, v in sorted((instance.labels or {}).items())]
    if not matchers:
        messages.error(request, f"{instance.rule.name} has no labels to match: silence it in the admin instead.")
    else:
        Silence.objects.create(
            matchers=matchers,
            starts_at=now,
            ends_at=now + SILENCE_FOR,
            created_by=request.user.get_username(),
            comment=f"Silenced for 1 h from the alerts page ({instance.rule.name}).",
        )
        until = timezone.localtime(now + SILENCE_FOR)
        messages.success(request, f"Silenced {instance.rule.name} ({describe(instance.labels)}) until {until:%H:%M}.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("dashboard:alerts")
    return HttpResponseRedirect(back)


def describe(labels: dict | None) -> str:
    """The labels that tell instances of one rule apart, as text: 'service=billing'."""
    shown = {k: v for k, v in (labels or {}).items() if k not in ("alertname", "severity")}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "no labels"


@require_GET
@vary_on_headers("HX-Request")
def alert_rule(request, pk: int):
    """One rule: its definition, its instances now, and every transition it made."""
    now = timezone.now()
    rule = get_object_or_404(AlertRule.objects.prefetch_related("channels"), pk=pk)
    instances = active_instances().filter(rule=rule).order_by(*SORTS["state"])
    history = AlertTransition.objects.filter(rule=rule).select_related("instance", "instance__service").order_by("-at", "-id")
    page = Paginator(history, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "rule": rule,
        "overrides": list(rule.overrides.select_related("service").order_by("service__name")),
        "rows": alert_rows(instances[:PAGE_SIZE], now),
        "active": instances.count(),
        "page": page,
        "can_silence": request.user.has_perm("notify.add_silence"),
        "now": now,
    }
    return render(request, _partial(request, "alerts/rule.html", "rule-state"), context)


def service_alerts_context(request, service: Service, now) -> dict:
    """What templates/alerts/_service_panel.html needs besides the service (four queries,
    whatever the number of alerts: instances, their rules' overrides, silences, transitions)."""
    instances = active_instances().filter(service=service).order_by(*SORTS["state"])
    recent = (
        AlertTransition.objects.filter(instance__service=service, at__gte=now - timedelta(days=7))
        .select_related("rule")
        .order_by("-at", "-id")[:10]
    )
    return {
        "alert_rows": alert_rows(instances, now),
        "alert_history": list(recent),
        "can_silence": request.user.has_perm("notify.add_silence"),
        # the silence button comes back to the service page, not to this panel's own URL
        "next_url": reverse("dashboard:service", args=[service.pk]),
        "now": now,
    }


@require_GET
def service_alerts(request, pk: int):
    """The alerts panel of one service page: the page renders it, then it polls itself here."""
    service = get_object_or_404(Service, pk=pk)
    context = {"service": service, **service_alerts_context(request, service, timezone.now())}
    return render(request, "alerts/_service_panel.html", context)
