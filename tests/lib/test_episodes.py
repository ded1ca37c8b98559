from __future__ import annotations

from datetime import datetime, timedelta, timezone

from poolboard.lib.episodes import (
    IDLE_IN_TRANSACTION,
    LONG_QUERY,
    LONG_TRANSACTION,
    EpisodeKey,
    OpenEpisode,
    Session,
    Thresholds,
    track,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
BS = T0 - timedelta(hours=1)


def s(pid=100, state="idle in transaction", xact=None, query=None, change=None, bs=BS, app="billing"):
    return Session(
        pid=pid, backend_start=bs, xact_start=xact, query_start=query, state_change=change,
        state=state, application_name=app, usename="u", client_addr="10.0.0.1", query="SELECT $1",
        fingerprint="abc",
    )


def opened_from(changes):
    return [OpenEpisode(o.key, o.peak_age_s) for o in changes.opened + changes.updated]


def test_idle_in_transaction_opens_at_threshold_from_state_change():
    now = T0
    sess = s(xact=now - timedelta(seconds=500), query=now - timedelta(seconds=90), change=now - timedelta(seconds=60))
    ch = track([], [sess], Thresholds(), now)
    kinds = {o.key.kind: o for o in ch.opened}
    assert set(kinds) == {IDLE_IN_TRANSACTION, LONG_TRANSACTION}
    assert kinds[IDLE_IN_TRANSACTION].age_s == 60
    assert kinds[IDLE_IN_TRANSACTION].key.started == now - timedelta(seconds=60)
    assert kinds[LONG_TRANSACTION].age_s == 500
    # 59 s idle: not yet
    young = s(xact=now - timedelta(seconds=59), change=now - timedelta(seconds=59))
    assert track([], [young], Thresholds(), now).opened == []


def test_long_query_from_query_start_only_when_active():
    now = T0
    active = s(state="active", xact=now - timedelta(seconds=31), query=now - timedelta(seconds=31), change=now - timedelta(seconds=31))
    ch = track([], [active], Thresholds(), now)
    assert [o.key.kind for o in ch.opened] == [LONG_QUERY]
    idle = s(state="idle", query=now - timedelta(seconds=600), change=now - timedelta(seconds=500))
    assert track([], [idle], Thresholds(), now).opened == []


def test_episode_lifecycle_open_update_close():
    th = Thresholds(idle_in_transaction_s=60, transaction_s=10_000)
    change = T0 - timedelta(seconds=70)
    sess = s(xact=change, change=change)
    ch1 = track([], [sess], th, T0)
    assert len(ch1.opened) == 1 and not ch1.updated and not ch1.closed
    ch2 = track(opened_from(ch1), [sess], th, T0 + timedelta(seconds=30))
    assert not ch2.opened and len(ch2.updated) == 1
    assert ch2.updated[0].peak_age_s == 100
    ch3 = track(opened_from(ch2), [], th, T0 + timedelta(seconds=60))
    assert [c.key for c in ch3.closed] == [ch1.opened[0].key]
    assert ch3.closed[0].ended == T0 + timedelta(seconds=60)


def test_new_transaction_on_same_pid_is_a_new_episode():
    th = Thresholds(transaction_s=10_000)
    first = s(xact=T0 - timedelta(seconds=100), change=T0 - timedelta(seconds=100))
    ch1 = track([], [first], th, T0)
    second = s(xact=T0 + timedelta(seconds=5), change=T0 + timedelta(seconds=5))
    ch2 = track(opened_from(ch1), [second], th, T0 + timedelta(seconds=90))
    assert len(ch2.opened) == 1 and len(ch2.closed) == 1
    assert ch2.opened[0].key != ch2.closed[0].key


def test_pid_reuse_with_new_backend_start_is_a_new_episode():
    th = Thresholds(transaction_s=10_000)
    a = s(xact=T0 - timedelta(seconds=100), change=T0 - timedelta(seconds=100))
    ch1 = track([], [a], th, T0)
    b = s(xact=T0 - timedelta(seconds=100), change=T0 - timedelta(seconds=100), bs=BS + timedelta(minutes=1))
    ch2 = track(opened_from(ch1), [b], th, T0 + timedelta(seconds=30))
    assert len(ch2.opened) == 1 and len(ch2.closed) == 1


def test_peak_never_decreases():
    key = EpisodeKey(IDLE_IN_TRANSACTION, 100, BS, T0 - timedelta(seconds=70))
    sess = s(xact=key.started, change=key.started)
    ch = track([OpenEpisode(key, 1_000.0)], [sess], Thresholds(transaction_s=10_000), T0)
    assert ch.updated[0].peak_age_s == 1_000.0


def test_truncated_rows_do_not_close_episodes_that_may_be_beyond_the_cut():
    th = Thresholds(transaction_s=10_000)
    cutoff = T0 - timedelta(seconds=200)
    old = EpisodeKey(IDLE_IN_TRANSACTION, 1, BS, T0 - timedelta(seconds=300))
    young = EpisodeKey(IDLE_IN_TRANSACTION, 2, BS, T0 - timedelta(seconds=100))
    ch = track([OpenEpisode(old, 1), OpenEpisode(young, 1)], [], th, T0, truncated_after=cutoff)
    assert [c.key for c in ch.closed] == [old]
