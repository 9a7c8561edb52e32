"""Which addresses a webhook may connect to: the SSRF guard's policy. Pure (no I/O).

A webhook target is chosen by a monitor's author, so without a guard the backend would POST,
with attacker-chosen headers, to its own loopback services, the LAN or a cloud metadata service
(issue 12, finding 7). Every address a target resolves to must be *global*: loopback, private
(RFC 1918), shared (RFC 6598), link-local (and so 169.254.169.254), unique-local, multicast,
unspecified, reserved and documentation ranges are refused unless a configured CIDR block
(``[webhooks] allow_networks``) holds the address. IPv4 addresses embedded in IPv6 (mapped,
NAT64, 6to4, Teredo) are judged as the IPv4 address they reach.

The senders apply ``NetworkPolicy.refusal`` to the addresses they actually connect to (after
their one resolution, so DNS rebinding cannot slip in a second answer); the API applies
``literal_refusal`` to targets that are IP literals, at creation time.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.errors import Problem

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = (  # cloud metadata services outside the ranges refused anyway
    ipaddress.IPv6Address("fd00:ec2::254"),
    ipaddress.IPv4Address("100.100.100.200"),
)


def _embedded(ip: IpAddress) -> IpAddress:
    """The IPv4 address an IPv6 address carries to, if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return ip


def address_class(ip: IpAddress) -> str | None:
    """Why this address is not a public Internet host, or None when it is one."""
    ip = _embedded(ip)
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("metadata", ip in _METADATA),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not global", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Addresses in ``allow`` are accepted even when they are not global (tests, a LAN hook)."""

    allow: tuple[IpNetwork, ...] = ()

    def refusal(self, ip: IpAddress) -> str | None:
        """None when the backend may connect to ``ip``; otherwise the address class (for logs
        only: what is refused never reaches a customer-readable text)."""
        if any(ip.version == net.version and ip in net for net in self.allow):
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return self.refusal(ip.ipv4_mapped)
        return address_class(ip)


STRICT = NetworkPolicy()  # only global addresses
LOOPBACK_ALLOWED = NetworkPolicy(  # tests, benches and the demo deliver to loopback receivers
    (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))
)


def parse_networks(values: object, path: str) -> tuple[tuple[IpNetwork, ...], list[Problem]]:
    """``allow_networks`` from the configuration: a list of CIDR strings."""
    if not isinstance(values, list):
        return (), [Problem(path, 'must be a list of CIDR blocks such as "127.0.0.0/8"')]
    networks: list[IpNetwork] = []
    problems = []
    for i, value in enumerate(values):
        try:
            if not isinstance(value, str):
                raise TypeError(f"{value!r} is not a string")
            networks.append(ipaddress.ip_network(value, strict=True))
        except (TypeError, ValueError) as exc:
            problems.append(Problem(f"{path}[{i}]", f"not a CIDR block: {exc}"))
    return tuple(networks), problems


def literal_address(host: str) -> IpAddress | None:
    """The address a host name denotes by itself: IPv4/IPv6 literals, and the legacy IPv4
    forms (``2130706433``, ``0x7f.1``) that the system resolver also accepts."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def literal_refusal(url: str, policy: NetworkPolicy, path: str) -> list[Problem]:
    """A problem when ``url``'s host is an IP literal the policy refuses (names are checked
    when the sender resolves them)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return []  # the target check reports a malformed URL
    ip = literal_address(host)
    if ip is None or policy.refusal(ip) is None:
        return []
    return [Problem(path, "the target's address is refused by the network policy")]
