"""Which addresses a notification may be sent to (server-side request forgery guard).

Pure: the caller resolves the host name and passes the addresses in. Refused unless an
allow-listed network contains the address:
- link-local (169.254.0.0/16, fe80::/10) and the cloud metadata endpoints (AWS/GCP/Azure
  169.254.169.254, Alibaba 100.100.100.200, AWS IPv6 fd00:ec2::254, metadata.google.internal):
  a webhook there would hand the instance's credentials to whoever can edit a channel;
- loopback, private (RFC 1918, fc00::/7), carrier-grade NAT (100.64.0.0/10), unspecified,
  multicast and reserved addresses: poolboard's own network is not a notification target
  by default (healthchecks refuses private addresses the same way).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

METADATA_HOSTS = {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}
CGNAT = ipaddress.ip_network("100.64.0.0/10")


class AddressRefused(ValueError):
    pass


def parse_networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """NOTIFY_ALLOW_NETWORKS entries ("127.0.0.1", "10.0.0.0/8") as networks; raises ValueError naming a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return networks


def why_refused(address: str, allowed: list) -> str | None:
    """None when `address` may be sent to; otherwise the reason, in words."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return None
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is link-local"
    if ip.is_loopback:
        return f"{ip} is loopback"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return f"{ip} is not a unicast address"
    if ip in CGNAT or ip.is_private:
        return f"{ip} is a private address"
    return None


def check_url(url: str) -> tuple[str, int]:
    """The (host, port) of an http(s) URL fit to send to, before any address check; AddressRefused says why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise AddressRefused("only http:// and https:// URLs are sent to")
    if not parts.hostname:
        raise AddressRefused("the URL has no host")
    if parts.username or parts.password:
        raise AddressRefused("the URL carries a user:password; give credentials as a secret instead")
    host = parts.hostname.rstrip(".").lower()
    if host in METADATA_HOSTS:
        raise AddressRefused(f"{host} is a cloud metadata host")
    return host, port or (443 if parts.scheme == "https" else 80)


def check_addresses(host: str, addresses: list[str], allowed: list) -> None:
    """Every address `host` resolved to must be allowed (a name with one bad address is refused)."""
    if not addresses:
        raise AddressRefused(f"{host} does not resolve")
    for address in addresses:
        reason = why_refused(address, allowed)
        if reason:
            raise AddressRefused(f"{host}: {reason} (allow it with NOTIFY_ALLOW_NETWORKS)" if host != address else
                                 f"{reason} (allow it with NOTIFY_ALLOW_NETWORKS)")
