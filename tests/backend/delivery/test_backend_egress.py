"""The SSRF policy (backend.delivery.egress), pure: which addresses are refused, what the
allowlist lets
through, literal targets in every spelling the system resolver accepts, the configuration."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.config import config_from_dict
from backend.delivery.egress import (
    LOOPBACK_ALLOWED,
    STRICT,
    NetworkPolicy,
    address_class,
    literal_address,
    literal_refusal,
)
from backend.errors import ConfigError
from tests.backend.conftest import SECRET

REFUSED = {
    "127.0.0.1": "loopback",
    "127.3.2.1": "loopback",
    "::1": "loopback",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fd12:3456::1": "private",
    "100.64.0.1": "not global",
    "100.100.100.200": "metadata",
    "fd00:ec2::254": "metadata",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "240.0.0.1": "reserved",
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe": "link-local",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1": "loopback",  # 6to4 of 127.0.0.1
}


@pytest.mark.parametrize(("address", "kind"), sorted(REFUSED.items()))
def test_non_global_addresses_are_refused(address: str, kind: str) -> None:
    ip = ipaddress.ip_address(address)
    assert address_class(ip) == kind
    assert STRICT.refusal(ip) == kind


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert STRICT.refusal(ipaddress.ip_address(address)) is None


def test_the_allowlist_admits_only_its_blocks() -> None:
    assert LOOPBACK_ALLOWED.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert LOOPBACK_ALLOWED.refusal(ipaddress.ip_address("::1")) is None
    assert LOOPBACK_ALLOWED.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert LOOPBACK_ALLOWED.refusal(ipaddress.ip_address("169.254.169.254")) == "link-local"
    one = NetworkPolicy((ipaddress.ip_network("127.0.0.2/32"),))
    assert one.refusal(ipaddress.ip_address("127.0.0.2")) is None
    assert one.refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"


@given(st.ip_addresses(v=4, network="10.0.0.0/8") | st.ip_addresses(v=6, network="fc00::/7"))
def test_private_ranges_are_refused_unless_allowed(ip: ipaddress.IPv4Address) -> None:
    assert STRICT.refusal(ip) is not None
    allow = NetworkPolicy((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fc00::/7")))
    assert allow.refusal(ip) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # one 32-bit number
        ("0x7f.1", "127.0.0.1"),  # hexadecimal, two parts
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("::1", "::1"),
        ("hooks.example", None),
        ("deadbeef.example", None),
        ("", None),
    ],
)
def test_literal_addresses_in_every_spelling(host: str, expected: str | None) -> None:
    found = literal_address(host)
    assert (None if found is None else str(found)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://[::1]:8443/x",
        "https://169.254.169.254/latest/meta-data",
        "https://2130706433/",
        "https://[::ffff:10.0.0.1]/",
    ],
)
def test_forbidden_literal_targets_are_problems(url: str) -> None:
    (problem,) = literal_refusal(url, STRICT, "$.target")
    assert problem.path == "$.target" and "network policy" in problem.message


@pytest.mark.parametrize(
    "url", ["https://hooks.example/in", "https://localhost/", "https://8.8.8.8/", "https://[x"]
)
def test_names_and_public_literals_pass_the_creation_check(url: str) -> None:
    assert literal_refusal(url, STRICT, "$.target") == []


def test_allow_networks_in_the_configuration() -> None:
    base = {"store": {"path": "b.db"}, "webhooks": {"default_secret": SECRET}}
    config = config_from_dict(base, Path("."))
    assert config.webhooks.allow_networks == ()
    assert config.webhooks.max_answer_bytes == 64 * 1024
    allowed = {"default_secret": SECRET, "allow_networks": ["127.0.0.0/8", "::1/128"]}
    config = config_from_dict({**base, "webhooks": allowed}, Path("."))
    assert config.webhooks.policy == LOOPBACK_ALLOWED
    wrong = {
        "default_secret": SECRET,
        "allow_networks": ["127.0.0.1/8", "nope", 7],
        "max_answer_bytes": 0,
    }
    with pytest.raises(ConfigError) as caught:
        config_from_dict({**base, "webhooks": wrong}, Path("."))
    paths = [p.path for p in caught.value.problems]
    assert paths == [
        "$.webhooks.allow_networks[0]",
        "$.webhooks.allow_networks[1]",
        "$.webhooks.allow_networks[2]",
        "$.webhooks.max_answer_bytes",
    ]
