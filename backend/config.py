"""Backend configuration: one TOML file, validated once, every problem reported together.

See ``backend.example.toml`` for every key. The result is a tree of frozen dataclasses; nothing
downstream sees the raw TOML.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.errors import Problem
from agent.wire import DEFAULT_PREFIX, valid_topic_level
from backend.delivery.egress import IpNetwork, NetworkPolicy, parse_networks
from backend.delivery.endpoints import BreakerPolicy, EndpointLimit
from backend.delivery.retention import RetentionConfig
from backend.delivery.retry import MAX_AGE, NONE_RETRY_DELAY
from backend.delivery.routing import endpoint_of
from backend.delivery.signing import SecretError, secret_key
from backend.errors import ConfigError

log = logging.getLogger(__name__)
RETIRED_CLIENTS = ("httpx", "builtin")  # webhook senders before issue 14
SCOPES = ("monitors:read", "monitors:write", "deliveries:read", "deliveries:write")
ADMIN = "admin"  # every fleet, and the vehicle records (which vehicle belongs to which fleet)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token: its scopes and the fleets it reaches (all of them with ``admin``)."""

    token: str = field(repr=False)
    scopes: frozenset[str] = frozenset(SCOPES)
    name: str = ""
    fleets: frozenset[str] = frozenset()

    @property
    def admin(self) -> bool:
        return ADMIN in self.scopes


@dataclass(frozen=True, slots=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: tuple[ApiToken, ...] = ()
    base_url: str = ""  # for _links; empty = relative links


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "edgemon-backend"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = 30
    share_group: str = "edgemon"
    session_expiry: int = 3600  # seconds the broker keeps unacknowledged messages for us


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    default_secret: str = field(repr=False)
    # fleet id -> whsec_ secret; never keyed by anything a monitor's author writes
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    ca_bundle: Path | None = None
    allow_insecure_http: bool = False
    connect_timeout: float = 5.0
    timeout: float = 10.0
    per_endpoint_concurrency: int = 8
    # -- delivery at scale (issue 15): per endpoint, a rate (0 = none) and a circuit breaker
    per_endpoint_rate: float = 0.0  # requests per second, sustained
    per_endpoint_burst: int = 0  # requests at once; 0 = per_endpoint_concurrency
    breaker: BreakerPolicy | None = field(default_factory=BreakerPolicy)  # None: no breaker
    # [webhooks.endpoints."https://host:port"]: limits of one endpoint, the others' by default
    endpoints: dict[str, EndpointLimit] = field(default_factory=dict)
    client: str = "aiohttp"  # the only sender; "httpx" and "builtin" are read as "aiohttp"
    # -- hostile endpoints (issue 12): SSRF allowlist and the answer cap; ``timeout`` above is
    # the deadline of a whole attempt (connect, TLS, request and answer)
    allow_networks: tuple[IpNetwork, ...] = ()  # CIDR blocks allowed although not global
    max_answer_bytes: int = 64 * 1024  # of an answer body read; beyond, the connection closes

    @property
    def policy(self) -> NetworkPolicy:
        return NetworkPolicy(self.allow_networks)

    def secret_for(self, fleet_id: str) -> str:
        """The signing secret of a fleet's deliveries (the default for a fleet without one)."""
        return self.secrets.get(fleet_id, self.default_secret)


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    poll_interval: float = 0.2
    max_age: float = MAX_AGE
    none_retry_delay: float = NONE_RETRY_DELAY
    lease: float = 120.0
    claim_batch: int = 200


# -- [limits]: bounds on hostile input (issue 12, findings 1, 2 and 9) --------------------------
@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Every size, depth, queue and rate the backend accepts from outside."""

    max_event_bytes: int = 65_536  # one MQTT event payload; larger ones are counted and dropped
    max_state_bytes: int = 16_384  # one retained monitor-state report
    max_request_bytes: int = 1_048_576  # one HTTP request body (413 beyond)
    max_json_depth: int = 32  # nesting of objects/arrays in any JSON we parse
    max_number_chars: int = 40  # characters of one JSON number literal
    ingest_queue: int = 2_000  # messages between paho's thread and the commit worker
    # Events per second per vehicle, sustained (token bucket): twice the agent's own publishing
    # pace ([mqtt] max_publish_rate, 50/s), so only a vehicle that is not a stock agent is cut.
    vehicle_rate: float = 100.0
    # Events a vehicle may send at once (bucket size): room for the backlog an agent's outbox
    # resends, as fast as the broker acknowledges, after a gateway was offline for hours.
    vehicle_burst: int = 2_000


# -- end of [limits] ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackendConfig:
    store_path: Path
    webhooks: WebhookConfig
    topic_prefix: str = DEFAULT_PREFIX
    api: ApiConfig = ApiConfig()
    mqtt: MqttConfig = MqttConfig()
    dispatcher: DispatcherConfig = DispatcherConfig()
    vehicles: dict[str, str] = field(default_factory=dict)  # VIN -> fleet id, from [fleets.*]
    limits: LimitsConfig = LimitsConfig()
    retention: RetentionConfig = field(default_factory=RetentionConfig)


class _Reader:
    """Typed access to one TOML table that records problems instead of raising."""

    def __init__(self, table: Any, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        if not isinstance(table, dict):
            problems.append(Problem(path, "must be a table"))
            table = {}
        self.table: dict[str, Any] = table

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self.table.get(key, default)
        if value is default:
            return default
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            self.problems.append(
                Problem(f"{self.path}.{key}", f"has the wrong type: {type(value).__name__}")
            )
            return default
        return value

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value is not None and value <= 0:
            self.problems.append(Problem(f"{self.path}.{key}", "must be > 0"))
            return default
        return value

    def path_value(self, key: str, base: Path, must_exist: bool = False) -> Path | None:
        text = self.get(key, str, None)
        if not text:
            return None
        found = (base / text).resolve() if not Path(text).is_absolute() else Path(text)
        if must_exist and not found.exists():
            self.problems.append(Problem(f"{self.path}.{key}", f"file {found} does not exist"))
        return found

    def sub(self, key: str) -> _Reader:
        return _Reader(self.table.get(key, {}), f"{self.path}.{key}", self.problems)


def _api(r: _Reader) -> ApiConfig:
    tokens = []
    for i, raw in enumerate(r.get("tokens", list, [])):
        item = _Reader(raw, f"{r.path}.tokens[{i}]", r.problems)
        token = item.get("token", str, "")
        if len(token) < 16:
            r.problems.append(Problem(f"{item.path}.token", "a token needs 16 characters or more"))
        scopes = _scopes(item)
        fleets = _fleets(item, admin=ADMIN in scopes)
        tokens.append(ApiToken(token, scopes, item.get("name", str, ""), fleets))
    return ApiConfig(
        host=r.get("host", str, "127.0.0.1"),
        port=r.get("port", int, 8080),
        tokens=tuple(tokens),
        base_url=r.get("base_url", str, "").rstrip("/"),
    )


def _mqtt(r: _Reader, base: Path) -> MqttConfig:
    return MqttConfig(
        host=r.get("host", str, "127.0.0.1"),
        port=r.get("port", int, 1883),
        client_id=r.get("client_id", str, "edgemon-backend"),
        username=r.get("username", str, None),
        password=r.get("password", str, None),
        tls=r.get("tls", bool, False),
        ca_file=r.path_value("ca_file", base, must_exist=True),
        cert_file=r.path_value("cert_file", base, must_exist=True),
        key_file=r.path_value("key_file", base, must_exist=True),
        keepalive=r.positive("keepalive", int, 30),
        share_group=r.get("share_group", str, "edgemon"),
        session_expiry=r.positive("session_expiry", int, 3600),
    )


def _secret(r: _Reader, key: str, value: str) -> str:
    try:
        secret_key(value)
    except SecretError as exc:
        r.problems.append(Problem(f"{r.path}.{key}", str(exc)))
    return value


def _webhooks(r: _Reader, base: Path) -> WebhookConfig:
    default = r.get("default_secret", str, "")
    if not default:
        r.problems.append(Problem(f"{r.path}.default_secret", "required (a whsec_ secret)"))
    else:
        _secret(r, "default_secret", default)
    return WebhookConfig(
        default_secret=default,
        secrets=_fleet_secrets(r),
        ca_bundle=r.path_value("ca_bundle", base, must_exist=True),
        allow_insecure_http=r.get("allow_insecure_http", bool, False),
        connect_timeout=r.positive("connect_timeout", float, 5.0),
        timeout=r.positive("timeout", float, 10.0),
        **_endpoint_limits(r),
        client=_client(r),
        **_endpoint_guard(r),
    )


def _endpoint_guard(r: _Reader) -> dict[str, Any]:
    """The ``[webhooks]`` keys against hostile endpoints (issue 12, findings 5 and 7)."""
    networks, problems = parse_networks(
        r.get("allow_networks", list, []), f"{r.path}.allow_networks"
    )
    r.problems.extend(problems)
    return {
        "allow_networks": networks,
        "max_answer_bytes": r.positive("max_answer_bytes", int, 64 * 1024),
    }


def _endpoint_limits(r: _Reader) -> dict[str, Any]:
    """The ``[webhooks]`` keys of delivery at scale: the limits of every endpoint (and of some
    by name), the circuit breaker."""
    d = BreakerPolicy()
    failures = r.get("breaker_failures", int, d.failures)
    if failures < 0:
        r.problems.append(Problem(f"{r.path}.breaker_failures", "must be >= 0 (0: no breaker)"))
    cooldown = r.positive("breaker_cooldown", float, d.cooldown)
    longest = r.positive("breaker_max_cooldown", float, d.max_cooldown)
    if longest < cooldown:
        r.problems.append(Problem(f"{r.path}.breaker_max_cooldown", "must be >= breaker_cooldown"))
    rate = r.get("per_endpoint_rate", float, 0.0)
    burst = r.get("per_endpoint_burst", int, 0)
    if rate < 0 or burst < 0:
        r.problems.append(Problem(f"{r.path}.per_endpoint_rate", "rate and burst must be >= 0"))
    concurrency = r.positive("per_endpoint_concurrency", int, 8)
    default = EndpointLimit(concurrency, max(rate, 0.0), max(burst, 0) or concurrency)
    return {
        "per_endpoint_concurrency": concurrency,
        "per_endpoint_rate": default.rate,
        "per_endpoint_burst": max(burst, 0),
        "breaker": BreakerPolicy(failures, cooldown, longest) if failures > 0 else None,
        "endpoints": _endpoint_overrides(r.sub("endpoints"), default),
    }


def _endpoint_overrides(r: _Reader, default: EndpointLimit) -> dict[str, EndpointLimit]:
    """``[webhooks.endpoints."https://host[:port]"]`` ``concurrency``, ``rate``, ``burst``: one
    endpoint's own limits (a receiver that takes more, or asks for less); keys are normalised
    to the endpoint the dispatcher groups by (``scheme://host:port``)."""
    found: dict[str, EndpointLimit] = {}
    for name in r.table:
        item = r.sub(name)
        parts = urlsplit(str(name))
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in "/":
            r.problems.append(Problem(item.path, "must be 'https://host' or 'https://host:port'"))
            continue
        concurrency = item.positive("concurrency", int, default.concurrency)
        rate = item.get("rate", float, default.rate)
        if rate < 0:
            r.problems.append(Problem(f"{item.path}.rate", "must be >= 0 (0: no rate limit)"))
        burst = item.positive("burst", int, concurrency)
        found[endpoint_of(str(name))] = EndpointLimit(concurrency, max(rate, 0.0), burst)
    return found


def _retention(r: _Reader) -> RetentionConfig:
    """``[retention]``: ages in seconds; at least an hour, so QoS 1 repeats of an event still
    find it and are not delivered twice."""
    d = RetentionConfig()
    config = RetentionConfig(
        delivered=r.positive("delivered", float, d.delivered),
        dead=r.positive("dead", float, d.dead),
        interval=r.positive("interval", float, d.interval),
        batch=r.positive("batch", int, d.batch),
    )
    for key in ("delivered", "dead"):
        if getattr(config, key) < 3600:
            r.problems.append(Problem(f"{r.path}.{key}", "must be >= 3600 (one hour)"))
    return config


def _client(r: _Reader) -> str:
    """``client``: one sender since issue 14 (aiohttp). The former choices still load, with a
    warning, so an existing configuration keeps working."""
    client: str = r.get("client", str, "aiohttp")
    if client in RETIRED_CLIENTS:
        log.warning(
            "%s.client = %r is deprecated and read as 'aiohttp': the backend has one webhook"
            " sender since issue 14; remove the key",
            r.path,
            client,
        )
        return "aiohttp"
    if client != "aiohttp":
        r.problems.append(Problem(f"{r.path}.client", "must be 'aiohttp' (or be left out)"))
    return "aiohttp"


def _dispatcher(r: _Reader) -> DispatcherConfig:
    return DispatcherConfig(
        poll_interval=r.positive("poll_interval", float, 0.2),
        max_age=r.positive("max_age", float, MAX_AGE),
        none_retry_delay=r.positive("none_retry_delay", float, NONE_RETRY_DELAY),
        lease=r.positive("lease", float, 120.0),
        claim_batch=r.positive("claim_batch", int, 200),
    )


# -- tenancy: tokens bound to fleets, signing secrets bound to fleets -------------------------


def _scopes(item: _Reader) -> frozenset[str]:
    scopes = item.get("scopes", list, list(SCOPES))
    unknown = [s for s in scopes if s not in (*SCOPES, ADMIN)]
    if unknown:
        item.problems.append(Problem(f"{item.path}.scopes", f"unknown scopes {unknown}"))
    return frozenset(s for s in scopes if isinstance(s, str))


def _fleets(item: _Reader, *, admin: bool) -> frozenset[str]:
    """The fleets a token reaches; a token needs some, or the ``admin`` scope."""
    fleets = item.get("fleets", list, [])
    bad = [f for f in fleets if not isinstance(f, str) or not valid_topic_level(f)]
    if bad:
        item.problems.append(Problem(f"{item.path}.fleets", f"invalid fleet ids {bad}"))
    if not fleets and not admin:
        message = "a token needs 'fleets = [...]' or the 'admin' scope"
        item.problems.append(Problem(f"{item.path}.fleets", message))
    return frozenset(f for f in fleets if isinstance(f, str))


def _fleet_secrets(r: _Reader) -> dict[str, str]:
    """``[webhooks.fleet_secrets]``: fleet id -> whsec_ secret. The former ``[webhooks.secrets]``
    chose the secret by the callback name a monitor's author writes: refused, not reread."""
    if "secrets" in r.table:
        message = "secrets by callback name are not supported; use [webhooks.fleet_secrets]"
        r.problems.append(Problem(f"{r.path}.secrets", message))
    reader = r.sub("fleet_secrets")
    found = {}
    for name, value in reader.table.items():
        if not isinstance(value, str):
            r.problems.append(Problem(f"{reader.path}.{name}", "must be a whsec_ secret"))
            continue
        found[str(name)] = _secret(reader, str(name), value)
    return found


def _vehicles(r: _Reader) -> dict[str, str]:
    """``[fleets."<id>"] vehicles = [VIN, ...]``: provisioned at every start, like the API's
    ``PUT /fleets/{id}/vehicles/{vin}``. A VIN belongs to one fleet."""
    found: dict[str, str] = {}
    for fleet_id in r.table:
        fleet = r.sub(fleet_id)
        if not valid_topic_level(str(fleet_id)):
            r.problems.append(Problem(fleet.path, "is not a valid fleet id"))
        for vin in fleet.get("vehicles", list, []):
            if not isinstance(vin, str) or not valid_topic_level(vin):
                r.problems.append(Problem(f"{fleet.path}.vehicles", f"{vin!r} is not a VIN"))
            elif found.setdefault(vin, str(fleet_id)) != fleet_id:
                message = f"{vin} is also in fleet {found[vin]!r}"
                r.problems.append(Problem(f"{fleet.path}.vehicles", message))
    return found


# -- [limits] reader ---------------------------------------------------------------------------
def _limits(r: _Reader) -> LimitsConfig:
    d = LimitsConfig()
    return LimitsConfig(
        max_event_bytes=r.positive("max_event_bytes", int, d.max_event_bytes),
        max_state_bytes=r.positive("max_state_bytes", int, d.max_state_bytes),
        max_request_bytes=r.positive("max_request_bytes", int, d.max_request_bytes),
        max_json_depth=r.positive("max_json_depth", int, d.max_json_depth),
        max_number_chars=r.positive("max_number_chars", int, d.max_number_chars),
        ingest_queue=r.positive("ingest_queue", int, d.ingest_queue),
        vehicle_rate=r.positive("vehicle_rate", float, d.vehicle_rate),
        vehicle_burst=r.positive("vehicle_burst", int, d.vehicle_burst),
    )


# -- end of [limits] reader ----------------------------------------------------------------------


def config_from_dict(raw: dict[str, Any], base: Path) -> BackendConfig:
    problems: list[Problem] = []
    top = _Reader(raw, "$", problems)
    store = top.sub("store")
    store_path = store.path_value("path", base)
    if store_path is None:
        problems.append(Problem("$.store.path", "required (the SQLite file)"))
    config = BackendConfig(
        store_path=store_path or Path("backend.db"),
        webhooks=_webhooks(top.sub("webhooks"), base),
        topic_prefix=top.get("topic_prefix", str, DEFAULT_PREFIX).rstrip("/"),
        api=_api(top.sub("api")),
        mqtt=_mqtt(top.sub("mqtt"), base),
        dispatcher=_dispatcher(top.sub("dispatcher")),
        vehicles=_vehicles(top.sub("fleets")),
        limits=_limits(top.sub("limits")),
        retention=_retention(top.sub("retention")),
    )
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: Path) -> BackendConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot read: {exc.strerror}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(str(path), f"not valid TOML: {exc}")]) from exc
    return config_from_dict(raw, path.parent)
