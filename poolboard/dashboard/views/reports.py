"""The weekly capacity reports: the list, one report (its CSVs and PDF), the profile page
where a user subscribes, and the unsubscribe link (no login: the signed token is the key)."""

from __future__ import annotations

import csv

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers

from poolboard.databases.models import MonitoredServer
from poolboard.fleet.models import Service
from poolboard.lib import capacity
from poolboard.reports import pdf
from poolboard.reports.models import Report, Subscription, report_time_zone, validate_time_zone
from poolboard.reports.present import report_context

PAGE_SIZE = 26  # half a year of weeks


@require_GET
def report_list(request):
    page = Paginator(Report.objects.newest_versions(), PAGE_SIZE).get_page(request.GET.get("page"))
    tz = report_time_zone()
    context = {"reports": page.object_list, "page": page, "time_zone": tz,
               "last_week": capacity.last_complete_period(timezone.now(), tz).key}
    return render(request, "reports/list.html", context)


def _report_or_404(request, week: str) -> tuple[Report, str]:
    version = request.GET.get("version", "")
    if version and not version.isdigit():
        version = ""
    report = Report.objects.of_week(week, int(version) if version else None)
    if report is None:
        raise Http404(f"No report of {week}" + (f" version {version}" if version else ""))
    return report, version


@require_GET
@vary_on_headers("HX-Request")
def report_detail(request, week: str):
    report, version = _report_or_404(request, week)
    context = report_context(report, sort=request.GET.get("sort", ""), direction=request.GET.get("dir", "desc"))
    context["version_param"] = version
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, "reports/_services_table.html", context)
    context["versions"] = list(Report.objects.filter(week=week).order_by("version").only("version"))
    return render(request, "reports/report.html", context)


CSV_TABLES = {
    "services": (
        ["service", "pools", "max", "coverage", "peak_util", "p95_util", "p99_util", "peak_in_use", "p95_in_use",
         "saturation_minutes", "timeouts", "acquisitions", "timeouts_per_1k", "acquire_p95_s",
         "p95_util_last_week", "saturation_minutes_last_week", "sizing"],
        lambda s: [s["name"], s["pools"], *(s["figures"][k] for k in (
            "max", "coverage", "peak_util", "p95_util", "p99_util", "peak_in_use", "p95_in_use", "saturation_minutes",
            "timeouts", "acquisitions", "timeouts_per_1k", "acquire_p95_s")),
            s["previous"]["p95_util"], s["previous"]["saturation_minutes"], (s.get("sizing") or {}).get("text", "")],
    ),
    "databases": (
        ["server", "peak", "p95", "usable", "warn_line", "peak_pct", "previous_peak", "forecast", "slope_per_day"],
        lambda d: [d["name"], d["peak"], d["p95"], d["usable"], d["warn_line"], d["peak_pct"], d["previous_peak"],
                   d["forecast"]["label"], d["forecast"]["slope_per_day"]],
    ),
}


@require_GET
def report_csv(request, week: str, table: str):
    if table not in CSV_TABLES:
        raise Http404(f"No table {table}: there are {', '.join(CSV_TABLES)}.")
    report, _ = _report_or_404(request, week)
    header, row = CSV_TABLES[table]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="poolboard-{report.week}-v{report.version}-{table}.csv"'
    writer = csv.writer(response)
    writer.writerow(header)
    for item in report.numbers[table]:
        writer.writerow(row(item))
    return response


@require_GET
def report_pdf(request, week: str):
    report, _ = _report_or_404(request, week)
    try:
        document = pdf.render_pdf(report)
    except pdf.PdfUnavailable as exc:
        return HttpResponse(str(exc), status=503, content_type="text/plain; charset=utf-8")
    response = HttpResponse(document, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{pdf.filename(report)}"'
    return response


class NameListField(forms.CharField):
    def to_python(self, value):
        text = super().to_python(value) or ""
        return [name.strip() for name in text.split(",") if name.strip()]

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value


class SubscriptionForm(forms.ModelForm):
    services = NameListField(required=False, widget=forms.TextInput(attrs={"size": 40}))
    databases = NameListField(required=False, widget=forms.TextInput(attrs={"size": 40}))
    time_zone = forms.CharField(max_length=64, validators=[validate_time_zone])
    hour = forms.IntegerField(min_value=0, max_value=23)

    class Meta:
        model = Subscription
        fields = ["active", "weekday", "hour", "time_zone", "services", "databases"]

    def clean_services(self) -> list[str]:
        return _known(self.cleaned_data["services"], Service, "service")

    def clean_databases(self) -> list[str]:
        return _known(self.cleaned_data["databases"], MonitoredServer, "monitored server")


def _known(names: list[str], model, what: str) -> list[str]:
    """A typo would silently empty the subscriber's report: refuse names poolboard does not know."""
    unknown = sorted(set(names) - set(model.objects.filter(name__in=names).values_list("name", flat=True)))
    if unknown:
        raise forms.ValidationError(f"No {what} named {', '.join(unknown)}.")
    return names


@require_http_methods(["GET", "POST"])
def profile(request):
    """The user's own page: for now, their weekly report subscription."""
    subscription = Subscription.objects.filter(user=request.user, email="").first()
    if subscription is None:
        subscription = Subscription(user=request.user, active=False, time_zone=report_time_zone())
    form = SubscriptionForm(request.POST or None, instance=subscription)
    if request.method == "POST":
        if form.is_valid():
            sub = form.save(commit=False)
            sub.next_send_at = sub.next_send_after(timezone.now())
            if sub.pk:
                # Plain UPDATE of the chosen fields: the beat may be advancing next_send_at.
                Subscription.objects.filter(pk=sub.pk).update(**{f: getattr(sub, f) for f in [*form.Meta.fields, "next_send_at"]})
            else:
                sub.save()
            messages.success(request, "Saved: " + (f"the weekly report goes to {request.user.email or 'your address'} "
                                                   f"on {sub.get_weekday_display()}s at {sub.hour:02d}:00 {sub.time_zone}."
                                                   if sub.active else "no weekly report email."))
            return redirect("dashboard:profile")
    context = {"form": form, "subscription": subscription if subscription.pk else None,
               "report_time_zone": report_time_zone()}
    return render(request, "reports/profile.html", context, status=400 if form.errors else 200)


@login_not_required
@csrf_exempt  # RFC 8058 one-click: the mail client POSTs without a CSRF token; the signed token is the key
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    subscription = Subscription.from_unsubscribe_token(token)
    done = False
    if subscription is not None and request.method == "POST":
        Subscription.objects.filter(pk=subscription.pk).update(active=False)
        done = True
    status = 404 if subscription is None else 200
    return render(request, "reports/unsubscribe.html", {"subscription": subscription, "done": done}, status=status)
