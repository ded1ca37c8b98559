"""The Celery side: woken after the enqueueing transaction commits, on the beat, pruning, the settings check."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from poolboard.celery import app
from poolboard.notify.checks import notify_configuration_check
from poolboard.notify.dispatch import prune
from poolboard.notify.models import Notification, Silence
from poolboard.notify.outbox import enqueue
from tests.notify.factories import T0, alert, channel


@pytest.fixture
def eager_celery():
    """The woken task runs here, in the test, instead of on a worker."""
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.mark.django_db(transaction=True)
def test_enqueue_wakes_the_dispatcher_only_once_the_transaction_commits(receiver, settings, eager_celery):
    settings.NOTIFY_WAKE_DISPATCHER = True
    hook = receiver()
    ch = channel(url=hook.url)
    with transaction.atomic():
        enqueue(ch, "0123456789abcdef:1", "alert", alert(), T0)
        assert hook.requests == []  # nothing leaves before the commit
    assert hook.keys() == ["0123456789abcdef:1"]
    assert Notification.objects.get().state == "sent"


def test_the_beat_runs_the_dispatcher_every_few_seconds():
    schedule = {entry["task"]: entry["schedule"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["poolboard.notify.dispatch_notifications"] <= 10
    assert "poolboard.notify.prune_notifications" in schedule


@pytest.mark.django_db
def test_prune_forgets_finished_rows_and_long_expired_silences_but_keeps_waiting_ones():
    ch = channel()
    old_sent = enqueue(ch, "a:1", "alert", alert("aaaaaaaaaaaaaaaa"), T0 - timedelta(days=40))
    Notification.objects.filter(pk=old_sent.pk).update(state="sent")
    old_waiting = enqueue(ch, "b:1", "alert", alert("bbbbbbbbbbbbbbbb"), T0 - timedelta(days=40))
    recent = enqueue(ch, "c:1", "alert", alert("cccccccccccccccc"), T0 - timedelta(days=1))
    Notification.objects.filter(pk=recent.pk).update(state="sent")
    matcher = [{"name": "service", "value": "x", "isRegex": False, "isEqual": True}]
    Silence.objects.create(matchers=matcher, starts_at=T0 - timedelta(days=9), ends_at=T0 - timedelta(days=6), created_by="b", comment="c")
    kept = Silence.objects.create(matchers=matcher, starts_at=T0 - timedelta(days=2), ends_at=T0 - timedelta(days=1), created_by="b", comment="c")
    assert prune(T0) == 2
    assert set(Notification.objects.values_list("pk", flat=True)) == {old_waiting.pk, recent.pk}
    assert list(Silence.objects.all()) == [kept]


def test_a_malformed_allow_list_is_a_system_check_error(settings):
    settings.NOTIFY_ALLOW_NETWORKS = ["10.0.0.0/8", "intranet"]
    (error,) = notify_configuration_check(None)
    assert error.id == "poolboard.notify.E001" and "'intranet' is not an IP address or network" in error.msg
    settings.NOTIFY_ALLOW_NETWORKS = ["10.0.0.0/8"]
    assert notify_configuration_check(None) == []


@pytest.mark.django_db
def test_a_malformed_allow_list_is_a_form_error_not_a_crash(settings):
    from django.core.exceptions import ValidationError

    from poolboard.notify.models import Channel

    settings.NOTIFY_ALLOW_NETWORKS = ["intranet"]
    with pytest.raises(ValidationError, match="cannot be checked: NOTIFY_ALLOW_NETWORKS"):
        Channel(name="x", kind="webhook", settings={"url": "http://127.0.0.1:9/"}).full_clean()
