"""Which service holds a database session.

Ordered rules on application_name (glob pattern), usename and client_addr
(CIDR); the first rule whose every given criterion matches wins. Without a
matching rule, a session whose application_name equals a service name
belongs to that service. poolboard's own sessions (application_name
starting "poolboard-") belong to nobody and are left out of episodes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

OWN_PREFIX = "poolboard-"


def is_own(application_name: str | None) -> bool:
    return bool(application_name) and application_name.startswith(OWN_PREFIX)


def parse_cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a CIDR ("10.0.0.0/8") or a bare address; raise ValueError with a clear message."""

    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP network: {value!r} (expected e.g. 10.0.0.0/8)") from None


@dataclass(frozen=True)
class Rule:
    service: str
    application_name: str = ""  # glob: "billing-*", "worker-?"; "" = any
    usename: str = ""  # exact; "" = any
    client_addr: str = ""  # CIDR; "" = any
    _network: object = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.application_name or self.usename or self.client_addr):
            raise ValueError("a rule needs at least one of application_name, usename, client_addr")
        if self.client_addr:
            object.__setattr__(self, "_network", parse_cidr(self.client_addr))

    def matches(self, application_name: str | None, usename: str | None, client_addr: str | None) -> bool:
        if self.application_name and not fnmatchcase(application_name or "", self.application_name):
            return False
        if self.usename and self.usename != (usename or ""):
            return False
        if self.client_addr:
            if not client_addr:  # a Unix-socket session has no address
                return False
            try:
                addr = ipaddress.ip_address(client_addr.split("/")[0])
            except ValueError:
                return False
            if addr.version != self._network.version or addr not in self._network:
                return False
        return True


class Attributor:
    """Attribute sessions to services; results are memoised per (app, user, addr).

    Snapshots repeat the same few triples thousands of times, so the
    memo keeps attribution cost flat in the number of sessions.
    """

    def __init__(self, rules: Iterable[Rule], services: Iterable[str]) -> None:
        self.rules = list(rules)
        self.services = frozenset(services)
        self._memo: dict[tuple, str | None] = {}

    def __call__(self, application_name: str | None, usename: str | None, client_addr: str | None) -> str | None:
        key = (application_name, usename, client_addr)
        try:
            return self._memo[key]
        except KeyError:
            pass
        result = self._attribute(application_name, usename, client_addr)
        if len(self._memo) < 100_000:
            self._memo[key] = result
        return result

    def _attribute(self, application_name: str | None, usename: str | None, client_addr: str | None) -> str | None:
        if is_own(application_name):
            return None
        for rule in self.rules:
            if rule.matches(application_name, usename, client_addr):
                return rule.service
        if application_name and application_name in self.services:
            return application_name
        return None
