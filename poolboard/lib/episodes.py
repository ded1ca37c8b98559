"""Episodes: long-held sessions tracked across pg_stat_activity snapshots.

Instead of copying every session row into history, each snapshot is
compared with the episodes still open from the previous one:

- idle_in_transaction: state "idle in transaction[ (aborted)]", age from
  state_change (how long it has really been idle, not the transaction age);
- long_transaction: any session with an open transaction, age from xact_start;
- long_query: state "active", age from query_start.

An episode is keyed by (kind, pid, backend_start, start): the pid alone is
reused by the server, and the same session can have many episodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

IDLE_IN_TRANSACTION = "idle_in_transaction"
LONG_TRANSACTION = "long_transaction"
LONG_QUERY = "long_query"
KINDS = (IDLE_IN_TRANSACTION, LONG_TRANSACTION, LONG_QUERY)

IDLE_IN_TX_STATES = frozenset({"idle in transaction", "idle in transaction (aborted)"})


@dataclass(frozen=True)
class Thresholds:
    idle_in_transaction_s: float = 60.0
    query_s: float = 30.0
    transaction_s: float = 300.0


@dataclass(frozen=True)
class Session:
    """One pg_stat_activity row, query text already cleaned (lib.querytext)."""

    pid: int
    backend_start: datetime | None
    xact_start: datetime | None
    query_start: datetime | None
    state_change: datetime | None
    state: str
    wait_event_type: str = ""
    wait_event: str = ""
    application_name: str = ""
    usename: str = ""
    client_addr: str = ""
    datname: str = ""
    query: str = ""
    fingerprint: str = ""

    def age_s(self, now: datetime) -> float | None:
        """Age of the oldest thing this session holds (transaction, else query)."""
        start = self.xact_start or self.query_start
        return (now - start).total_seconds() if start else None


class EpisodeKey(NamedTuple):
    """A NamedTuple, not a dataclass: every snapshot hashes and compares hundreds of keys
    (track(), the store's open-episode map), and a tuple's hash and == run in C."""

    kind: str
    pid: int
    backend_start: datetime | None
    started: datetime


class OpenEpisode(NamedTuple):
    """What the caller remembers about an episode still open."""

    key: EpisodeKey
    peak_age_s: float


# Observation and Closed are NamedTuples too: a snapshot makes one per ongoing episode
# (hundreds), and a frozen dataclass's __init__ sets each field through object.__setattr__.
class Observation(NamedTuple):
    """An episode seen in this snapshot: to open or to update."""

    key: EpisodeKey
    age_s: float  # age now
    peak_age_s: float  # max(previous peak, age now)
    session: Session


class Closed(NamedTuple):
    key: EpisodeKey
    ended: datetime


@dataclass
class Changes:
    opened: list[Observation] = field(default_factory=list)
    updated: list[Observation] = field(default_factory=list)
    closed: list[Closed] = field(default_factory=list)


def candidates(session: Session, thresholds: Thresholds, now: datetime) -> list[tuple[EpisodeKey, float]]:
    """The episodes this session is in right now, with their ages in seconds.

    Written out per kind (no helper closure, no per-call threshold lookup): it runs
    for every session row of every snapshot.
    """

    found: list[tuple[EpisodeKey, float]] = []
    state = session.state
    if not state or state == "idle":
        return found
    if state in IDLE_IN_TX_STATES and session.state_change is not None:
        age = (now - session.state_change).total_seconds()
        if age >= thresholds.idle_in_transaction_s:
            found.append((EpisodeKey(IDLE_IN_TRANSACTION, session.pid, session.backend_start, session.state_change), age))
    if session.xact_start is not None:
        age = (now - session.xact_start).total_seconds()
        if age >= thresholds.transaction_s:
            found.append((EpisodeKey(LONG_TRANSACTION, session.pid, session.backend_start, session.xact_start), age))
    if state == "active" and session.query_start is not None:
        age = (now - session.query_start).total_seconds()
        if age >= thresholds.query_s:
            found.append((EpisodeKey(LONG_QUERY, session.pid, session.backend_start, session.query_start), age))
    return found


def track(
    open_episodes: Iterable[OpenEpisode],
    sessions: Iterable[Session],
    thresholds: Thresholds,
    now: datetime,
    truncated_after: datetime | None = None,
) -> Changes:
    """Compare one snapshot with the episodes still open.

    1. Every session above a threshold is an observation of an episode.
    2. An observation whose key is open is an update (last seen, peak age).
    3. Otherwise it opens a new episode.
    4. An open episode not observed is closed at `now` (it ended between
       its last sighting and this snapshot).

    `truncated_after`: when the snapshot's session rows were cut by the
    LIMIT (rows come oldest first by coalesce(xact_start, query_start)),
    the sort key of the last row. An unseen episode that started after it
    may simply not have made the cut, so it is left open, untouched. One
    that started before it would have been in the rows, so it is closed.
    """

    previous = {e.key: e.peak_age_s for e in open_episodes}
    changes = Changes()
    opened, updated = changes.opened, changes.updated
    seen: set[EpisodeKey] = set()
    for session in sessions:
        for key, age in candidates(session, thresholds, now):
            if key in seen:
                continue
            seen.add(key)
            peak = previous.get(key)
            if peak is None:
                opened.append(Observation(key, age, age, session))
            else:
                updated.append(Observation(key, age, age if age > peak else peak, session))
    for key in previous:
        if key in seen:
            continue
        if truncated_after is not None and key.started >= truncated_after:
            continue
        changes.closed.append(Closed(key, now))
    return changes
