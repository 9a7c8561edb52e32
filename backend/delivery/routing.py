"""From a monitor's ``subscribeParam`` and an event to a delivery ``Route``; the webhook body.

Pure. Reference: ``stellantis-monitors.md`` §1.1 (attributes, variables, batching) and §3.1
(the B2B webhook message). Variables ``$vin``, ``$monitorID``, ``$fleetID`` (and ``$vid``, which
has no separate meaning here and stands for the VIN) are matched case-insensitively (§7.10)
anywhere in an attribute value. A Query attribute that uses ``$vin`` disables batching.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent.errors import Problem
from agent.model import Event
from agent.wire import event_to_dict
from backend.store.records import Route

_VARIABLE = re.compile(r"\$(vin|vid|monitorid|fleetid)\b", re.IGNORECASE)
_VIN_VARIABLE = re.compile(r"\$(vin|vid)\b", re.IGNORECASE)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type",
                     "content-length", "host", "transfer-encoding", "connection"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeliverySpec:
    """The delivery part of a monitor, in plain values (built by ``backend.monitors``)."""

    callback_name: str
    target: str
    attributes: tuple[tuple[str, str, str], ...]  # (type, key, value)
    policy: str = "None"
    retry_number: int = 3
    retry_delay: float = 10.0
    batch_size: int | None = None
    batch_window: float = 60.0


def substitute(value: str, *, vin: str, monitor_id: str, fleet_id: str | None) -> str:
    names = {"vin": vin, "vid": vin, "monitorid": monitor_id, "fleetid": fleet_id or ""}
    return _VARIABLE.sub(lambda m: names[m.group(1).lower()], value)


def batching_disabled(spec: DeliverySpec) -> bool:
    return any(kind == "Query" and _VIN_VARIABLE.search(v) for kind, _, v in spec.attributes)


def endpoint_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def target_problems(spec: DeliverySpec, allow_insecure_http: bool, path: str) -> list[Problem]:
    """Why a callback cannot be used by this backend (scheme, host, header names)."""
    problems = []
    parts = urlsplit(spec.target)
    allowed = ("https", "http") if allow_insecure_http else ("https",)
    if parts.scheme not in allowed:
        problems.append(
            Problem(f"{path}.target", "the target must be an https:// URL (plain http is off)")
        )
    if not parts.hostname:
        problems.append(Problem(f"{path}.target", "the target has no host"))
    for i, (kind, key, value) in enumerate(spec.attributes):
        where = f"{path}.attributes[{i}]"
        if kind == "Header" and (not _HEADER_NAME.match(key) or key.lower() in _RESERVED_HEADERS):
            problems.append(Problem(f"{where}.key", f"{key!r} cannot be sent as a header"))
        if any(c in value for c in "\r\n\0"):
            problems.append(Problem(f"{where}.value", "a value cannot hold line breaks"))
    return problems


def route(spec: DeliverySpec, *, monitor_id: str, vin: str, fleet_id: str | None) -> Route:
    """Where one event of this monitor goes, with every variable substituted."""

    def sub(text: str) -> str:
        return substitute(text, vin=vin, monitor_id=monitor_id, fleet_id=fleet_id)

    headers = tuple((k, sub(v)) for kind, k, v in spec.attributes if kind == "Header")
    body = tuple((k, sub(v)) for kind, k, v in spec.attributes if kind == "Body")
    query = [(k, sub(v)) for kind, k, v in spec.attributes if kind == "Query"]
    parts = urlsplit(spec.target)
    if query:
        merged = parse_qsl(parts.query, keep_blank_values=True) + query
        parts = parts._replace(query=urlencode(merged))
    url = urlunsplit(parts)
    size = 1 if spec.batch_size is None or batching_disabled(spec) else max(spec.batch_size, 1)
    key_source = json.dumps([url, headers, body, spec.callback_name])
    return Route(
        monitor_id=monitor_id,
        callback_name=spec.callback_name,
        url=url,
        endpoint=endpoint_of(url),
        headers=headers,
        body_attributes=body,
        batch_key=hashlib.sha256(key_source.encode()).hexdigest()[:32],
        batch_size=size,
        batch_window=spec.batch_window,
        policy=spec.policy,
        retry_number=spec.retry_number,
        retry_delay=spec.retry_delay,
        fleet_id=fleet_id or "",
    )


def webhook_event(event: Event) -> dict[str, Any]:
    """One ``MonitorEvent`` of the B2B webhook body (reference §3.1)."""
    wire = event_to_dict(event)
    return {
        "fleetId": wire["fleetId"],
        "vin": wire["vin"],
        "eventDate": wire["eventDate"],
        "values": wire["values"],
        "extensions": wire["extensions"],
        "refresh": wire["refresh"],
    }


def webhook_body(
    monitor_id: str, body_attributes: Sequence[tuple[str, str]], events_json: Sequence[str]
) -> bytes:
    """The ``MonitorEvents`` body; events are stored JSON texts, joined without re-parsing."""
    head = json.dumps(
        {
            "monitorId": monitor_id,
            "attributes": [{"key": k, "value": v} for k, v in body_attributes],
        },
        separators=(",", ":"),
    )
    return (head[:-1] + ',"events":[' + ",".join(events_json) + "]}").encode()
