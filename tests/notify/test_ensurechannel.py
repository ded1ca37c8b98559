"""`manage.py ensurechannel`: the demo's (and a scripted set-up's) way to a channel on every rule."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from poolboard.alerts.models import AlertRule
from poolboard.notify.models import Channel

pytestmark = pytest.mark.django_db


def ensure(*args: str) -> str:
    out = StringIO()
    call_command("ensurechannel", *args, stdout=out)
    return out.getvalue()


def test_it_creates_a_webhook_channel_on_every_rule_once(settings) -> None:
    settings.NOTIFY_ALLOW_NETWORKS = ["127.0.0.1/32"]
    AlertRule.objects.all().delete()
    rules = [AlertRule.objects.create(name=n, signal="waiting", comparator=">", threshold=0) for n in ("A", "B")]
    assert "on 2 rules" in ensure("hook", "webhook", "--url", "http://127.0.0.1:9095/", "--every-rule", "--group-wait", "5")
    ensure("hook", "webhook", "--url", "http://127.0.0.1:9096/", "--every-rule")  # a second run updates, adds nothing
    hook = Channel.objects.get(name="hook")
    assert (hook.settings["url"], hook.group_wait_s) == ("http://127.0.0.1:9096/", 5)
    assert [list(r.channels.values_list("name", flat=True)) for r in rules] == [["hook"], ["hook"]]


def test_it_creates_an_email_channel_without_touching_the_rules() -> None:
    ensure("mail", "email", "--to", "oncall@example.org, dba@example.org")
    assert Channel.objects.get(name="mail").settings == {"to": ["oncall@example.org", "dba@example.org"]}
    assert not AlertRule.objects.filter(channels__name="mail").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("hook", "webhook", "--url", "http://169.254.169.254/latest"), "settings:"),
    (("hook", "webhook"), "A webhook channel needs"),
    (("mail", "email", "--to", "not-an-address"), "'not-an-address' is not an email address."),
])
def test_it_refuses_a_bad_channel_and_says_why(args, message) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        ensure(*args)
    assert not Channel.objects.exists()
