"""Which monitored server a hot standby streams from: pure matching of what its WAL receiver
reports (pg_stat_wal_receiver.sender_host / sender_port) against the monitored servers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

K = TypeVar("K")

# A server monitored as "localhost" and a receiver connected to 127.0.0.1 are the same host.
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _host_key(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return "loopback" if host in _LOOPBACK else host


def sender_server(sender_host: str | None, sender_port: int | None,
                  servers: Iterable[tuple[K, str, int]]) -> K | None:
    """The key of the one server in `servers` ((key, host, port), …) at the receiver's sender.

    None when the receiver reports no sender (not streaming, or a role that may not read the
    view), the sender is a Unix socket directory, or no monitored server (or more than one,
    which the unique (host, port) rules out unless hosts differ only in spelling) is there.
    Hosts are compared as text, case-insensitively; names are not resolved (no I/O here).
    """
    if not sender_host or sender_port is None or sender_host.startswith("/"):
        return None
    want = (_host_key(sender_host), int(sender_port))
    found = [key for key, host, port in servers if (_host_key(host), int(port)) == want]
    return found[0] if len(found) == 1 else None
