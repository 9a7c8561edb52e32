"""The one gate for JSON that comes from outside: MQTT events, retained monitor states, API bodies.

Order of the checks, cheapest first, so a hostile payload costs little:

1. size: more than ``max_bytes`` is refused before anything looks inside;
2. text: strict UTF-8;
3. shape: the nesting depth is measured on the text (strings removed, brackets counted) before
   ``json.loads`` recurses, so a deep payload never reaches Python's recursion limit;
4. decode: number literals longer than ``max_number_chars`` are refused inside the parser (Python
   refuses ints over 4,300 digits with a ``ValueError`` that is no ``JSONDecodeError``), as are
   ``NaN``/``Infinity`` and floats that overflow to infinity (they could not be re-serialised as
   JSON for a webhook);
5. unicode: a lone surrogate (``"\\ud800"`` is valid JSON escaping but no character) is refused,
   since SQLite and UTF-8 encoders raise on it later, far from here;
6. wire: the shared validation of ``agent.wire`` (events) or of the state report.

``admit_event`` and ``admit_state`` raise only ``IngestError`` whatever the payload: anything
unexpected from the layers below becomes ``IngestError("unexpected", ...)``, so a caller that
counts, logs and acknowledges it can never lose its thread to an input.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC
from itertools import accumulate
from typing import Any, cast

from agent.model import Event
from agent.wire import Topics, WireError, event_from_dict, valid_topic_level
from backend.config import LimitsConfig
from backend.errors import IngestError, PayloadError
from backend.store.records import (
    REPORTED_STATES,
    ReportedState,
    VehicleMonitorState,
    VehicleStatus,
)

PAYLOAD_REASONS = frozenset(
    {"too_large", "not_utf8", "not_json", "too_deep", "number_too_long", "number_out_of_range",
     "bad_unicode"}
)  # fmt: skip
# What admit_event may raise, besides "unexpected": the last line, which the fuzz tests treat
# as a gap in the guard to close (with the payload kept in tests/data/fuzz/mqtt).
EVENT_REASONS = PAYLOAD_REASONS | {"malformed", "vin_mismatch"}
MAX_REQUESTS_PER_MINUTE = 600  # an [[obd]] bus asks at most 10 a second
LOG_CHARS = 300  # a skip's log line quotes at most this much of what the sender chose

# A JSON string as a lexer sees it (DOTALL: an escaped newline is still inside the string), so
# the brackets left after removing strings are exactly the structure json.loads will descend.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# Strict UTF-8 text holds no surrogate: one can only come from a \uD800-\uDFFF escape (or look
# like one, after an escaped backslash: then the full check below merely runs for nothing).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def truncated(text: str, limit: int = LOG_CHARS) -> str:
    """``text`` cut to ``limit`` characters, unprintable ones escaped (safe for one log line)."""
    cut = text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
    return cut.encode("unicode_escape", "backslashreplace").decode("ascii")


def json_depth(text: str) -> int:
    """The deepest nesting of objects/arrays in ``text`` (0 for a scalar), without recursion."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(_STEP[c] for c in brackets), default=0)


def _number_hooks(limits: LimitsConfig) -> dict[str, Any]:
    def checked(literal: str) -> str:
        if len(literal) > limits.max_number_chars:
            raise PayloadError(
                "number_too_long",
                f"a number of {len(literal)} characters (at most {limits.max_number_chars})",
            )
        return literal

    def parse_float(literal: str) -> float:
        value = float(checked(literal))
        if not math.isfinite(value):
            raise PayloadError("number_out_of_range", f"{truncated(literal)} is not finite")
        return value

    def parse_constant(name: str) -> float:
        raise PayloadError("number_out_of_range", f"{name} is not JSON")

    return {
        "parse_int": lambda literal: int(checked(literal)),
        "parse_float": parse_float,
        "parse_constant": parse_constant,
    }


def decode_json(raw: bytes, *, max_bytes: int, limits: LimitsConfig) -> Any:
    """Decode outside JSON within ``limits``; raise ``PayloadError`` (with a reason) otherwise."""
    if len(raw) > max_bytes:
        raise PayloadError("too_large", f"{len(raw)} bytes (at most {max_bytes})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("not_utf8", f"not UTF-8: {exc}") from exc
    depth = json_depth(text)
    if depth > limits.max_json_depth:
        raise PayloadError("too_deep", f"nested {depth} deep (at most {limits.max_json_depth})")
    try:
        value = json.loads(text, **_number_hooks(limits))
    except json.JSONDecodeError as exc:
        raise PayloadError("not_json", f"not JSON: {exc}") from exc
    except RecursionError as exc:  # the depth scan should make this unreachable
        raise PayloadError("too_deep", "nested too deep") from exc
    if _SURROGATE_ESCAPE.search(text):
        try:  # a pair is one character and encodes; a lone half does not
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PayloadError("bad_unicode", f"a lone surrogate: {exc.reason}") from exc
    return value


def admit_event(topics: Topics, topic: str, payload: bytes, limits: LimitsConfig) -> Event:
    """An event from ``…/vehicles/{vin}/events``, checked end to end; only ``IngestError``."""
    try:
        vin = topics.vin_of(topic)
        event = event_from_dict(
            decode_json(payload, max_bytes=limits.max_event_bytes, limits=limits)
        )
        event.event_date.astimezone(UTC)  # valid RFC 3339, yet outside years 1-9999 in UTC
    except PayloadError as exc:
        raise IngestError(exc.reason, str(exc)) from exc
    except WireError as exc:
        raise IngestError("malformed", f"malformed event: {exc}") from exc
    except (OverflowError, ValueError) as exc:
        raise IngestError("malformed", f"malformed event: {exc}") from exc
    except Exception as exc:  # the last line: an input must never kill the worker
        raise IngestError("unexpected", f"{type(exc).__name__}: {exc}") from exc
    if event.vin != vin:
        raise IngestError("vin_mismatch", f"event VIN {event.vin!r} differs from topic VIN {vin!r}")
    return event


def admit_state(
    topics: Topics, topic: str, payload: bytes, limits: LimitsConfig
) -> VehicleMonitorState | None:
    """A retained ``…/vehicles/{vin}/monitors/{id}/state`` report; None for an empty (cleared)
    one. Raises only ``IngestError``."""
    try:
        return _state(topics, topic, payload, limits)
    except PayloadError as exc:
        raise IngestError(exc.reason, str(exc)) from exc
    except WireError as exc:
        raise IngestError("bad_monitor_state", str(exc)) from exc
    except Exception as exc:  # the last line: an input must never kill paho's thread
        raise IngestError("unexpected", f"{type(exc).__name__}: {exc}") from exc


def _state(
    topics: Topics, topic: str, payload: bytes, limits: LimitsConfig
) -> VehicleMonitorState | None:
    vin = topics.vin_of(topic)
    parts = topic.split("/")
    if len(parts) < 3 or parts[-1] != "state" or not valid_topic_level(parts[-2]):
        raise WireError(f"not a monitor state topic: {topic!r}")
    if not payload:
        return None
    obj = decode_json(payload, max_bytes=limits.max_state_bytes, limits=limits)
    if not isinstance(obj, dict) or obj.get("state") not in REPORTED_STATES:
        raise WireError(f"monitor state needs 'state': {'|'.join(REPORTED_STATES)}")
    reasons = obj.get("reasons") or []
    if not isinstance(reasons, list):
        raise WireError("'reasons' must be a list")
    cost = obj.get("obdRequestsPerMinute")
    if cost is not None and (
        isinstance(cost, bool)
        or not isinstance(cost, (int, float))
        or not 0 <= cost <= MAX_REQUESTS_PER_MINUTE
    ):
        raise WireError(f"'obdRequestsPerMinute' must be 0 to {MAX_REQUESTS_PER_MINUTE}")
    return VehicleMonitorState(
        vin=vin,
        monitor_id=parts[-2],
        state=cast(ReportedState, obj["state"]),
        reasons=[{str(k): str(v) for k, v in r.items()} for r in reasons if isinstance(r, dict)],
        definition_hash=str(obj.get("hash", "")),
        at=str(obj.get("at", "")),
        obd_requests_per_minute=None if cost is None else float(cost),
    )


STATUS_FIELDS_CHARS = 64  # version and clock are short words; longer ones are cut


def admit_status(
    topics: Topics, topic: str, payload: bytes, limits: LimitsConfig, received_at: float
) -> VehicleStatus | None:
    """A retained ``…/vehicles/{vin}/status`` message, reduced to what the API shows (online,
    the agent's time, version, outbox depth, clock); None for an empty (cleared) one. The body
    may be up to four times ``max_state_bytes`` (it carries every counter). Raises only
    ``IngestError``."""
    try:
        vin = topics.vin_of(topic)
        if topic != topics.status(vin):
            raise WireError(f"not a status topic: {topic!r}")
        if not payload:
            return None
        obj = decode_json(payload, max_bytes=4 * limits.max_state_bytes, limits=limits)
        if not isinstance(obj, dict) or not isinstance(obj.get("online"), bool):
            raise WireError("a status needs 'online': true or false")
        if obj.get("vin", vin) != vin:
            raise WireError(f"status VIN {truncated(str(obj.get('vin')))!r} differs from {vin!r}")
        depth = obj.get("outboxDepth", 0)
        return VehicleStatus(
            vin=vin,
            online=obj["online"],
            at=str(obj.get("at", ""))[:STATUS_FIELDS_CHARS],
            version=str(obj.get("version", ""))[:STATUS_FIELDS_CHARS],
            outbox_depth=depth if type(depth) is int and 0 <= depth < 2**53 else -1,
            clock=str(obj.get("clock", ""))[:STATUS_FIELDS_CHARS],
            received_at=received_at,
        )
    except PayloadError as exc:
        raise IngestError(exc.reason, str(exc)) from exc
    except WireError as exc:
        raise IngestError("bad_status", str(exc)) from exc
    except Exception as exc:  # the last line: an input must never kill paho's thread
        raise IngestError("unexpected", f"{type(exc).__name__}: {exc}") from exc
