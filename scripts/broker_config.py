"""The shipped broker configuration (``deploy/mosquitto/``): the ACL file, generated from the
list of vehicles and their fleets, and ``mosquitto.conf``, rendered from its template.

mosquitto's ACL ``pattern`` lines substitute ``%u`` (the VIN) but know nothing of fleets, so a
pattern cannot say "the monitors of this vehicle's fleet". Every vehicle therefore gets its own
``user`` block, and the file has no ``pattern`` line at all: an account that is not listed (a
valid certificate for a VIN nobody provisioned, say) may do nothing.

    python -m scripts.broker_config acl fleet.toml -o /etc/mosquitto/edgemon/acl
    python -m scripts.broker_config conf -o /etc/mosquitto/mosquitto.conf --set user=mosquitto
    systemctl reload mosquitto        # SIGHUP: the ACL and password files are read again

Errors: ``AccessError`` (the fleet file, every problem at once) and ``TemplateError`` (a
placeholder without a value, or an unknown name), both ``BrokerConfigError``.
"""

from __future__ import annotations

import argparse
import re
import string
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.wire import DEFAULT_PREFIX, valid_topic_level
from backend.config import load_config
from backend.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "mosquitto" / "mosquitto.conf.template"
# Placeholders of the template, with the values of a Debian install.
DEFAULTS: Mapping[str, str] = {
    "vehicle_listener": "8883",
    "service_listener": "8884",
    "cafile": "/etc/mosquitto/edgemon/ca.pem",
    "certfile": "/etc/mosquitto/edgemon/server.pem",
    "keyfile": "/etc/mosquitto/edgemon/server.key",
    "crlfile": "/etc/mosquitto/edgemon/crl.pem",
    "password_file": "/etc/mosquitto/edgemon/passwd",
    "acl_file": "/etc/mosquitto/edgemon/acl",
    "persistence_location": "/var/lib/mosquitto/",
    "autosave_interval": "60",
    "user": "mosquitto",
}
_ROLES = ("backend", "consumers", "observers")
# An account name: no space (the ACL file is split on spaces), no MQTT wildcard or separator.
_ACCOUNT = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# A real VIN (ISO 3779): 17 characters, no I, O or Q. Service accounts must not look like one,
# so that no vehicle certificate can ever carry a service's name.
VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}(/[A-Za-z0-9_.:-]{1,64}){0,7}$")
MAX_VEHICLES = 1_000_000


class BrokerConfigError(ValueError):
    """The broker configuration cannot be produced."""


class AccessError(BrokerConfigError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class TemplateError(BrokerConfigError):
    pass


@dataclass(frozen=True)
class BrokerAccess:
    """Who may connect and what each may do; ``vehicles`` maps a VIN to its fleet."""

    prefix: str = DEFAULT_PREFIX
    backend: tuple[str, ...] = ("backend",)
    consumers: tuple[str, ...] = ()
    observers: tuple[str, ...] = ()
    vehicles: tuple[tuple[str, str], ...] = field(default=())

    def fleet_of(self, vin: str) -> str | None:
        return dict(self.vehicles).get(vin)


def parse_access(raw: Mapping[str, Any]) -> BrokerAccess:
    """A fleet file's content, checked as a whole; raises AccessError with every problem."""
    problems: list[str] = []
    unknown = set(raw) - {"topic_prefix", "accounts", "fleets"}
    problems += [f"unknown key {key!r}" for key in sorted(unknown)]
    prefix = raw.get("topic_prefix", DEFAULT_PREFIX)
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        problems.append(f"topic_prefix {prefix!r} is not a topic without wildcards")
    roles = _accounts(raw.get("accounts", {}), problems)
    vehicles = _vehicles(raw.get("fleets", {}), problems)
    names = [name for role in roles.values() for name in role]
    problems += [f"account {n!r} is listed twice" for n in sorted(_duplicates(names))]
    problems += [
        f"{v!r} is both a vehicle and an account" for v in sorted(set(names) & set(vehicles))
    ]
    if problems:
        raise AccessError(problems)
    return BrokerAccess(
        prefix=prefix,
        backend=roles["backend"],
        consumers=roles["consumers"],
        observers=roles["observers"],
        vehicles=tuple(sorted(vehicles.items())),
    )


def _accounts(raw: Any, problems: list[str]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        problems.append("[accounts] must be a table")
        raw = {}
    problems += [f"accounts.{key}: unknown role" for key in sorted(set(raw) - set(_ROLES))]
    roles: dict[str, tuple[str, ...]] = {}
    for role in _ROLES:
        names = raw.get(role, ["backend"] if role == "backend" else [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append(f"accounts.{role} must be a list of names")
            names = []
        for name in names:
            if not _ACCOUNT.match(name):
                problems.append(f"accounts.{role}: {name!r} is not a valid account name")
            elif VIN.match(name):
                problems.append(f"accounts.{role}: {name!r} looks like a VIN; pick another name")
        roles[role] = tuple(names)
    return roles


def _vehicles(raw: Any, problems: list[str]) -> dict[str, str]:
    """``[fleets."<id>"] vehicles = [VIN, ...]``, the shape of backend.toml; VIN -> fleet."""
    if not isinstance(raw, dict):
        problems.append('[fleets] must be a table of [fleets."<id>"] vehicles = [VIN, ...]')
        return {}
    vehicles: dict[str, str] = {}
    for fleet, table in raw.items():
        listed = table.get("vehicles", []) if isinstance(table, dict) else None
        if not valid_topic_level(fleet):
            problems.append(f"fleets: {fleet!r} is not a valid fleet id")
        elif not isinstance(listed, list) or set(table) - {"vehicles"}:
            problems.append(f"fleets.{fleet}: expected only vehicles = [VIN, ...]")
        elif len(vehicles) + len(listed) > MAX_VEHICLES:
            problems.append(f"more than {MAX_VEHICLES} vehicles")
            break
        else:
            _add_vehicles(vehicles, fleet, listed, problems)
    return vehicles


def _add_vehicles(found: dict[str, str], fleet: str, vins: list[Any], problems: list[str]) -> None:
    for vin in vins:
        if not isinstance(vin, str) or not valid_topic_level(vin):
            problems.append(f"fleets.{fleet}: {vin!r} is not a valid VIN (one topic level)")
        elif found.setdefault(vin, fleet) != fleet:
            problems.append(f"fleets.{fleet}: {vin} is also in fleet {found[vin]!r}")


def with_vehicles(access: BrokerAccess, prefix: str, vehicles: Mapping[str, str]) -> BrokerAccess:
    """``access`` plus vehicles from elsewhere (backend.toml's [fleets]); a VIN in two fleets,
    or another topic prefix, is an AccessError."""
    problems = [f"topic_prefix {prefix!r} differs from {access.prefix!r}"] * (
        prefix != access.prefix
    )
    merged = dict(access.vehicles)
    for vin, fleet in vehicles.items():
        if merged.setdefault(vin, fleet) != fleet:
            problems.append(f"{vin} is in fleet {merged[vin]!r} here and {fleet!r} there")
    accounts = {*access.backend, *access.consumers, *access.observers}
    problems += [f"{v!r} is both a vehicle and an account" for v in sorted(accounts & set(merged))]
    if problems:
        raise AccessError(problems)
    return replace(access, vehicles=tuple(sorted(merged.items())))


def _duplicates(names: Iterable[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


def load_access(path: Path) -> BrokerAccess:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AccessError([f"{path}: {exc}"]) from exc
    return parse_access(raw)


def vehicle_rules(prefix: str, vin: str, fleet: str) -> list[tuple[str, str]]:
    """(access, topic) of one vehicle: publish its events, status, monitor states and capability
    manifest; read its own and its fleet's monitor definitions. Never write a definition, never
    read another's."""
    own = f"{prefix}/vehicles/{vin}"
    return [
        ("write", f"{own}/events"),
        ("write", f"{own}/status"),
        ("read", f"{own}/monitors/+"),
        ("write", f"{own}/monitors/+/state"),
        ("write", f"{own}/capabilities"),
        ("read", f"{prefix}/fleets/{fleet}/monitors/+"),
    ]


def acl_text(access: BrokerAccess) -> str:
    prefix = access.prefix
    blocks = [
        "# Generated by `python -m scripts.broker_config acl`: edit the fleet file, not this.\n"
        "# Reload: systemctl reload mosquitto (SIGHUP). No `pattern` lines: unlisted = nothing."
    ]
    role_rules = {
        "backend": [("readwrite", f"{prefix}/#")],
        "consumer": [
            ("read", f"{prefix}/vehicles/+/events"),
            ("read", f"{prefix}/vehicles/+/status"),
        ],
        "observer": [("read", f"{prefix}/#")],
    }
    for role, names in (
        ("backend", access.backend),
        ("consumer", access.consumers),
        ("observer", access.observers),
    ):
        blocks += [_block(name, role, role_rules[role]) for name in names]
    for vin, fleet in access.vehicles:
        blocks.append(_block(vin, f"vehicle of {fleet}", vehicle_rules(prefix, vin, fleet)))
    return "\n\n".join(blocks) + "\n"


def _block(user: str, what: str, rules: list[tuple[str, str]]) -> str:
    lines = [f"# {what}", f"user {user}"]
    lines += [f"topic {access} {topic}" for access, topic in rules]
    return "\n".join(lines)


def render_conf(values: Mapping[str, str], template: str | None = None) -> str:
    """The template with every placeholder filled from ``values`` over ``DEFAULTS``."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise TemplateError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    bad = [k for k, v in values.items() if not v or "\n" in v or "\r" in v]
    if bad:
        raise TemplateError(f"setting(s) {sorted(bad)} must be one non-empty line")
    try:
        return string.Template(text).substitute({**DEFAULTS, **values})
    except (KeyError, ValueError) as exc:
        raise TemplateError(f"the template has a placeholder without a value: {exc}") from exc


def _settings(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise TemplateError(f"--set {pair!r}: expected NAME=VALUE")
        values[name.strip()] = value.strip()
    return values


def _write(text: str, out: Path | None, mode: int) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=mode)
    out.chmod(mode)
    out.write_text(text, encoding="utf-8")


def _with_backend(access: BrokerAccess, path: Path) -> BrokerAccess:
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise AccessError([f"{path}: {exc}"]) from exc
    return with_vehicles(access, config.topic_prefix, config.vehicles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.broker_config", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="command", required=True)
    acl = sub.add_parser("acl", help="write the ACL file from a fleet file")
    acl.add_argument("fleet", type=Path, help='TOML: [accounts], [fleets."<id>"] vehicles')
    acl.add_argument(
        "--backend-config",
        type=Path,
        metavar="BACKEND_TOML",
        help="also the vehicles its [fleets] provisions (the backend's own list)",
    )
    acl.add_argument("-o", "--output", type=Path, help="default: standard output")
    conf = sub.add_parser("conf", help="render mosquitto.conf from the template")
    defaults = ", ".join(f"{name}={value}" for name, value in DEFAULTS.items())
    conf.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help=f"defaults: {defaults}"
    )
    conf.add_argument("-o", "--output", type=Path, help="default: standard output")
    args = parser.parse_args(argv)
    try:
        if args.command == "acl":
            access = load_access(args.fleet)
            if args.backend_config is not None:
                access = _with_backend(access, args.backend_config)
            _write(acl_text(access), args.output, 0o640)
        else:
            _write(render_conf(_settings(args.set)), args.output, 0o644)
    except BrokerConfigError as exc:
        problems = exc.problems if isinstance(exc, AccessError) else [str(exc)]
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
