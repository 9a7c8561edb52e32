"""The pure part of the shipped broker configuration: the fleet file, the ACL text, the template,
and the vehicle certificates (scripts/broker_config.py, scripts/vehicle_cert.py)."""

from __future__ import annotations

import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from agent.monitors.limits import MAX_MONITOR_BYTES
from agent.monitors.model import parse_monitor
from agent.wire import Topics
from backend.monitor_channel import monitor_payload, monitor_topic
from backend.store.records import MonitorRecord
from scripts.broker_config import (
    ROOT,
    AccessError,
    BrokerAccess,
    TemplateError,
    acl_text,
    load_access,
    parse_access,
    render_conf,
    with_vehicles,
)
from scripts.demo_monitors import oil_hot_while_driving
from scripts.pki import make_pki
from scripts.vehicle_cert import CertificateError, issue, load_ca
from scripts.vehicle_crl import build_crl, revoked_so_far, serial_of

VIN_A, VIN_B = "VF3ABCDEF12345678", "VR1AAAAAA00000001"
EXAMPLE = ROOT / "deploy" / "mosquitto" / "fleet.example.toml"


def _rules(acl: str) -> dict[str, set[str]]:
    """user -> {"access topic"} from an ACL text."""
    rules: dict[str, set[str]] = {}
    user = ""
    for line in acl.splitlines():
        if line.startswith("user "):
            user = line.split()[1]
            rules[user] = set()
        elif line.startswith("topic "):
            rules[user].add(line.removeprefix("topic "))
    return rules


def test_the_example_fleet_file_gives_each_vehicle_its_own_fleet_only() -> None:
    access = load_access(EXAMPLE)
    rules = _rules(acl_text(access))
    assert rules[VIN_A] == {
        f"write edgemon/v1/vehicles/{VIN_A}/events",
        f"write edgemon/v1/vehicles/{VIN_A}/status",
        f"read edgemon/v1/vehicles/{VIN_A}/monitors/+",
        f"write edgemon/v1/vehicles/{VIN_A}/monitors/+/state",
        f"write edgemon/v1/vehicles/{VIN_A}/capabilities",
        "read edgemon/v1/fleets/fleet-north/monitors/+",
    }
    assert "read edgemon/v1/fleets/fleet-south/monitors/+" in rules[VIN_B]
    assert rules["backend"] == {"readwrite edgemon/v1/#"}
    assert rules["consumer"] == {
        "read edgemon/v1/vehicles/+/events",
        "read edgemon/v1/vehicles/+/status",
    }
    assert not [line for line in acl_text(access).splitlines() if line.startswith("pattern")]


def test_every_problem_of_a_fleet_file_is_reported_at_once() -> None:
    raw = {
        "topic_prefix": "edgemon/#",
        "accounts": {"backend": ["backend"], "consumers": ["has space", VIN_A], "admins": []},
        "fleets": {
            "fleet-a": {"vehicles": ["VIN/WITH/SLASH", VIN_B, "backend"]},
            "fleet+": {"vehicles": []},
            "fleet-b": {"vehicles": [VIN_B], "tokens": []},
            "fleet-c": {"vehicles": [VIN_B]},
        },
        "extra": 1,
    }
    with pytest.raises(AccessError) as caught:
        parse_access(raw)
    text = "\n".join(caught.value.problems)
    for expected in (
        "unknown key 'extra'",
        "topic_prefix",
        "'has space' is not a valid account name",
        "looks like a VIN",
        "accounts.admins: unknown role",
        "'VIN/WITH/SLASH' is not a valid VIN",
        "'fleet+' is not a valid fleet id",
        "fleets.fleet-b: expected only vehicles",
        f"{VIN_B} is also in fleet 'fleet-a'",
        "'backend' is both a vehicle and an account",
    ):
        assert expected in text
    assert len(caught.value.problems) == 10


def test_vehicles_from_the_backend_configuration_join_the_fleet_file() -> None:
    access = parse_access({"fleets": {"north": {"vehicles": [VIN_A]}}})
    merged = with_vehicles(access, "edgemon/v1", {VIN_B: "south", VIN_A: "north"})
    assert dict(merged.vehicles) == {VIN_A: "north", VIN_B: "south"}
    with pytest.raises(AccessError) as caught:
        with_vehicles(access, "other/v1", {VIN_A: "south", "backend": "north"})
    text = "\n".join(caught.value.problems)
    assert "differs" in text and "'north' here and 'south' there" in text
    assert "'backend' is both a vehicle and an account" in text


def test_the_cli_reads_the_backends_fleets(tmp_path: Path) -> None:
    backend = tmp_path / "backend.toml"
    backend.write_text(
        f'[store]\npath = "b.db"\n[webhooks]\ndefault_secret = "whsec_{"a" * 32}"\n'
        '[fleets."fleet-east"]\nvehicles = ["VNE00000000000001"]\n'
    )
    run = [sys.executable, "-m", "scripts.broker_config", "acl", str(EXAMPLE)]
    done = subprocess.run(
        [*run, "--backend-config", str(backend)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rules = _rules(done.stdout)
    assert "read edgemon/v1/fleets/fleet-east/monitors/+" in rules["VNE00000000000001"]
    assert "read edgemon/v1/fleets/fleet-north/monitors/+" in rules[VIN_A]
    backend.write_text(backend.read_text() + f'[fleets."fleet-west"]\nvehicles = ["{VIN_A}"]\n')
    done = subprocess.run(
        [*run, "--backend-config", str(backend)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "'fleet-north' here and 'fleet-west' there" in done.stderr


def test_an_unreadable_fleet_file_is_an_access_error(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text("[vehicles\n")
    with pytest.raises(AccessError, match=r"fleet\.toml"):
        load_access(bad)


NAMES = st.one_of(
    st.text(max_size=30), st.from_regex(r"[A-Za-z0-9_.:+#/ \n-]{1,20}", fullmatch=True)
)


@given(NAMES, NAMES)
def test_no_fleet_file_entry_can_widen_a_vehicle_rule(vin: str, fleet: str) -> None:
    """Whatever the file says, a rule that is accepted holds no wildcard or separator smuggled
    in by a name, and no line break (the ACL file is line-oriented)."""
    try:
        access = parse_access({"fleets": {fleet: {"vehicles": [vin]}}})
    except AccessError:
        return
    rules = _rules(acl_text(access))[vin]
    assert len(rules) == 6
    for rule in rules:
        topic = rule.split(" ", 1)[1]
        levels = topic.split("/")
        assert levels[:2] == ["edgemon", "v1"] and "#" not in topic
        assert levels.count("+") == (1 if topic.endswith(("/+", "/+/state")) else 0)


def test_the_template_renders_with_defaults_and_overrides() -> None:
    conf = render_conf({"vehicle_listener": "18883 127.0.0.1", "user": "nobody"})
    lines = conf.splitlines()
    assert "listener 18883 127.0.0.1" in lines and "listener 8884" in lines
    assert "user nobody" in lines and "allow_anonymous false" in lines
    assert "require_certificate true" in lines and "use_identity_as_username true" in lines
    assert any(line.startswith("max_packet_size ") for line in lines)
    assert "$" not in conf


def _packet_limit() -> int:
    lines = render_conf({}).splitlines()
    setting = next(line for line in lines if line.startswith("max_packet_size "))
    return int(setting.split()[1])


@pytest.mark.parametrize("char", ["a", "\u00e9", "\x01", "\U0001f600"])
def test_a_monitor_the_backend_accepts_fits_in_a_broker_packet(char: str) -> None:
    """The broker disconnects a client that sends a packet over max_packet_size: if the backend
    accepted a monitor whose retained message is bigger, publishing it would cut the backend
    off at every reconnection. The largest label the monitor limits let through, in the
    characters JSON escapes the most, still fits."""
    definition = oil_hot_while_driving("https://example.com/hook")
    low, high = 0, MAX_MONITOR_BYTES  # the longest label parse_monitor accepts
    while low < high:
        middle = (low + high + 1) // 2
        accepted = not parse_monitor({**definition, "label": char * middle}).problems
        low, high = (middle, high) if accepted else (low, middle - 1)
    assert low > MAX_MONITOR_BYTES // 2  # the limit is near, not some other refusal
    record = MonitorRecord(
        "01a2" + "0" * 32, "fleet", "fleet-north", {**definition, "label": char * low},
        "Running", 0.0, 0.0,
    )  # fmt: skip
    topic = monitor_topic(Topics(), record)
    packet = len(monitor_payload(record)) + len(topic) + 64  # fixed header, properties
    assert packet <= _packet_limit()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"listener": "1"}, "unknown setting"),
        ({"user": "a\nallow_anonymous true"}, "one non-empty"),
    ],
)
def test_bad_template_settings_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render_conf(values)


def test_a_placeholder_without_value_is_refused() -> None:
    with pytest.raises(TemplateError, match="placeholder"):
        render_conf({}, template="listener ${nowhere}\n")


def test_the_cli_writes_the_acl_and_reports_errors(tmp_path: Path) -> None:
    out = tmp_path / "acl"
    run = [sys.executable, "-m", "scripts.broker_config", "acl"]
    example = EXAMPLE
    done = subprocess.run([*run, str(example), "-o", str(out)], cwd=ROOT, check=False)
    assert done.returncode == 0 and f"user {VIN_A}" in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    bad = tmp_path / "bad.toml"
    bad.write_text('[fleets.x]\nvehicles = ["A B"]\n')
    done = subprocess.run([*run, str(bad)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "is not a valid VIN" in done.stderr


# -- vehicle certificates ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[x509.Certificate, object, Path]:
    pki = make_pki(tmp_path_factory.mktemp("ca"))
    assert stat.S_IMODE(pki.ca_key_file.stat().st_mode) == 0o600
    cert, key = load_ca(pki.ca_file.read_bytes(), pki.ca_key_file.read_bytes())
    return cert, key, pki.ca_file


def test_a_vehicle_certificate_names_the_vin_and_is_for_clients_only(ca: tuple) -> None:  # type: ignore[type-arg]
    ca_cert, ca_key, _ = ca
    now = datetime.now(UTC)
    issued = issue(ca_cert, ca_key, VIN_A, now=now, days=30)
    cert = x509.load_pem_x509_certificate(issued.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == VIN_A
    assert cert.issuer == ca_cert.subject
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - now <= timedelta(days=30)
    assert cert.not_valid_before_utc <= now
    ca_cert.public_key().verify(  # type: ignore[call-arg]
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
    )
    assert issued.private_key is not None
    key = serialization.load_pem_private_key(issued.private_key, password=None)
    assert key.public_key() == cert.public_key()


def test_a_request_is_signed_only_for_its_own_vin(ca: tuple) -> None:  # type: ignore[type-arg]
    ca_cert, ca_key, _ = ca
    gateway_key = ec.generate_private_key(ec.SECP256R1())

    def request(cn: str) -> bytes:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject)
        return csr.sign(gateway_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    issued = issue(ca_cert, ca_key, VIN_A, now=datetime.now(UTC), csr_pem=request(VIN_A))
    assert issued.private_key is None  # the key stayed on the gateway
    cert = x509.load_pem_x509_certificate(issued.certificate)
    assert cert.public_key() == gateway_key.public_key()
    with pytest.raises(CertificateError, match="not the VIN"):
        issue(ca_cert, ca_key, VIN_A, now=datetime.now(UTC), csr_pem=request(VIN_B))
    with pytest.raises(CertificateError, match="cannot read"):
        issue(ca_cert, ca_key, VIN_A, now=datetime.now(UTC), csr_pem=b"not a request")


@pytest.mark.parametrize("vin", ["backend", "VF3ABCDEF1234567I", "VF3/BCDEF12345678", ""])
def test_no_certificate_for_something_that_is_not_a_vin(ca: tuple, vin: str) -> None:  # type: ignore[type-arg]
    ca_cert, ca_key, _ = ca
    with pytest.raises(CertificateError, match="not a VIN"):
        issue(ca_cert, ca_key, vin, now=datetime.now(UTC))


def test_the_cli_writes_a_private_key_readable_by_its_owner_only(ca: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _, _, ca_file = ca
    argv = [sys.executable, "-m", "scripts.vehicle_cert", "--ca", str(ca_file), "--ca-key"]
    argv += [str(ca_file.with_name("ca.key")), "--vin", VIN_B, "-o", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((tmp_path / f"{VIN_B}.key").stat().st_mode) == 0o600
    verify = ["openssl", "verify", "-CAfile", str(ca_file), "-purpose", "sslclient"]
    pem = str(tmp_path / f"{VIN_B}.pem")
    checked = subprocess.run([*verify, pem], capture_output=True, check=False)
    assert checked.returncode == 0, checked.stdout
    argv[argv.index("--vin") + 1] = "backend"
    refused = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "not a VIN" in refused.stderr


def test_a_ca_key_that_does_not_match_is_refused(ca: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _, _, ca_file = ca
    other = make_pki(tmp_path / "other")
    with pytest.raises(CertificateError, match="does not belong"):
        load_ca(ca_file.read_bytes(), other.ca_key_file.read_bytes())
    with pytest.raises(CertificateError, match="not a CA"):
        load_ca(other.cert_file.read_bytes(), other.key_file.read_bytes())


def test_a_revocation_list_keeps_its_entries_and_adds_new_ones(ca: tuple) -> None:  # type: ignore[type-arg]
    ca_cert, ca_key, _ = ca
    now = datetime.now(UTC)
    first = issue(ca_cert, ca_key, VIN_A, now=now)
    second = issue(ca_cert, ca_key, VIN_B, now=now)
    serial_a = serial_of((ca_cert, ca_key), first.certificate)
    empty = build_crl((ca_cert, ca_key), {}, now=now, days=10)
    assert revoked_so_far((ca_cert, ca_key), empty) == {}
    one = build_crl((ca_cert, ca_key), {serial_a: now}, now=now)
    kept = revoked_so_far((ca_cert, ca_key), one)
    assert set(kept) == {serial_a}
    serial_b = serial_of((ca_cert, ca_key), second.certificate)
    both = build_crl((ca_cert, ca_key), {**kept, serial_b: now}, now=now, days=30)
    crl = x509.load_pem_x509_crl(both)
    assert {entry.serial_number for entry in crl} == {serial_a, serial_b}
    assert crl.next_update_utc is not None and crl.next_update_utc - now <= timedelta(days=30)
    assert crl.is_signature_valid(ca_cert.public_key())


def test_a_revocation_list_refuses_foreign_material(ca: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    ca_cert, ca_key, _ = ca
    other = make_pki(tmp_path / "other")
    other_ca = load_ca(other.ca_file.read_bytes(), other.ca_key_file.read_bytes())
    foreign_crl = build_crl(other_ca, {}, now=datetime.now(UTC))
    with pytest.raises(CertificateError, match="not signed by this CA"):
        revoked_so_far((ca_cert, ca_key), foreign_crl)
    foreign_cert = issue(*other_ca, VIN_A, now=datetime.now(UTC)).certificate
    with pytest.raises(CertificateError, match="not issued by this CA"):
        serial_of((ca_cert, ca_key), foreign_cert)
    with pytest.raises(CertificateError, match="--days"):
        build_crl((ca_cert, ca_key), {}, now=datetime.now(UTC), days=0)


def test_an_access_object_is_frozen() -> None:
    access = BrokerAccess(vehicles=((VIN_A, "f"),))
    assert access.fleet_of(VIN_A) == "f" and access.fleet_of(VIN_B) is None
    with pytest.raises(AttributeError):
        access.prefix = "x"  # type: ignore[misc]
