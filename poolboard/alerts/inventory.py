"""The `alert_rules:` section of the inventory file (exportinventory / importinventory).

    alert_rules:
      - name: PoolWaiting
        enabled: true
        signal: waiting
        comparator: '>'
        threshold: 0.0
        for_s: 120
        severity: warning
        service_glob: 'billing-*'
        summary: '{{ service }}: {{ value }} callers waiting'
        channels: [oncall]                      # notify channels, by name
        overrides:                              # per-service thresholds
          - {service: batch, threshold: 5.0}
        ...

Each entry is checked by the same AlertRule.clean() the admin runs (poolboard.inventory.forms),
so a bad template or label names its line and field. Registered from AlertsConfig.ready(),
after the services and channels it refers to.
"""

from __future__ import annotations

from django import forms

from poolboard.fleet.models import Service
from poolboard.inventory.forms import MapList, NameList, Text, TextMap, bind, check_entries, known, yaml_formfield
from poolboard.inventory.registry import Writer
from poolboard.lib.inventory import Document

from .models import AlertRule, RuleOverride

SCALAR_FIELDS = [
    "enabled", "signal", "finding_kind", "service_glob", "service_labels", "database_glob", "comparator", "threshold",
    "for_s", "keep_firing_for_s", "severity", "labels", "summary", "description", "no_data", "max_instances", "origin",
]


class RuleForm(forms.ModelForm):
    file_fields = ("name", *SCALAR_FIELDS, "channels", "overrides")
    service_labels = TextMap(required=False)
    labels = TextMap(required=False)
    # 0 is meaningful here: fire at the first evaluation, no grace.
    for_s = forms.IntegerField(min_value=0, initial=0)
    keep_firing_for_s = forms.IntegerField(min_value=0, initial=0)
    channels = NameList(required=False)
    overrides = MapList(required=False)

    class Meta:
        model = AlertRule
        fields = ["name", *SCALAR_FIELDS]
        formfield_callback = yaml_formfield

    def __init__(self, *args, known_channels: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_channels = known_channels

    def clean_channels(self) -> list[str]:
        names = self.cleaned_data["channels"]
        unknown = [n for n in names if n not in self.known_channels]
        if unknown:
            raise forms.ValidationError(f"no channel named {', '.join(map(repr, unknown))}")
        return names


class OverrideForm(forms.Form):
    file_fields = ("service", "threshold")
    service = Text()
    threshold = forms.FloatField()

    def __init__(self, *args, known_services: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_services = known_services

    def clean_service(self) -> str:
        return known(self.cleaned_data["service"], self.known_services, "no service named {!r}")


def _channel_model():
    from poolboard.notify.models import Channel

    return Channel


def export_rules() -> list[dict]:
    rules = AlertRule.objects.order_by("name").prefetch_related("channels", "overrides__service")
    return [
        {
            "name": rule.name,
            **{f: getattr(rule, f) for f in SCALAR_FIELDS},
            "channels": sorted(c.name for c in rule.channels.all()),
            "overrides": [{"service": o.service.name, "threshold": o.threshold}
                          for o in sorted(rule.overrides.all(), key=lambda o: o.service.name)],
        }
        for rule in rules
    ]


def import_rules(doc: Document, state: dict) -> Writer:
    existing = {r.name: r for r in AlertRule.objects.all()}
    known_services = set(Service.objects.values_list("name", flat=True)) | set(state.get("services", set()))
    known_channels = set(_channel_model().objects.values_list("name", flat=True)) | set(state.get("channels", set()))

    def rule_form(entry: dict) -> RuleForm:
        return bind(RuleForm, entry, instance=existing.get(entry.get("name")) or AlertRule(), known_channels=known_channels)

    def override_form(entry: dict) -> OverrideForm:
        return bind(OverrideForm, entry, known_services=known_services)

    rows: list[tuple[AlertRule, list[str], list[tuple[str, float]]]] = []
    entries = doc.data.get("alert_rules")
    valid_rules = dict(check_entries(doc, ("alert_rules",), entries, rule_form))
    # Overrides are checked for every entry, valid or not, so the file's problems show at once.
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        path = ("alert_rules", index)
        overrides = entry.get("overrides") if isinstance(entry, dict) else None
        overrides = overrides if isinstance(overrides, list) else []
        valid = check_entries(doc, (*path, "overrides"), overrides, override_form, unique="service")
        form = valid_rules.get(path)
        if form is not None and len(valid) == len(overrides):
            rows.append((form.instance, form.cleaned_data["channels"],
                         [(f.cleaned_data["service"], f.cleaned_data["threshold"]) for _, f in valid]))

    def write() -> dict[str, int]:
        services = {s.name: s for s in Service.objects.all()}
        channels = {c.name: c for c in _channel_model().objects.all()}
        created = sum(1 for rule, _, _ in rows if rule.pk is None)
        for rule, channel_names, overrides in rows:
            rule.save()
            rule.channels.set([channels[n] for n in channel_names])
            # The file states this rule's overrides completely: replace them.
            RuleOverride.objects.filter(rule=rule).delete()
            RuleOverride.objects.bulk_create(
                RuleOverride(rule=rule, service=services[name], threshold=threshold) for name, threshold in overrides
            )
        return {"created": created, "updated": len(rows) - created}

    return write
