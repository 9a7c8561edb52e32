"""The monitor contract seen from the backend: validation through ``agent.monitors.model`` and
the conversion of a parsed ``Monitor`` into the plain ``DeliverySpec`` that routing uses.

A B2B monitor needs a ``callback.webhook`` (reference §1.1); its target must suit this backend
(https unless the development switch is on). Every problem comes back together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import Problem
from agent.monitors.model import Monitor, parse_monitor
from backend.delivery.routing import DeliverySpec, target_problems

CALLBACK_PATH = "$.subscribeParam.callback.webhook"


@dataclass(frozen=True, slots=True)
class Validated:
    monitor: Monitor | None
    spec: DeliverySpec | None
    problems: list[Problem]
    warnings: list[Problem]


def delivery_spec(monitor: Monitor) -> DeliverySpec | None:
    webhook = monitor.subscribe.webhook
    if webhook is None:
        return None
    attributes = (
        *webhook.attributes,
        *monitor.subscribe.callback_attributes,
        *monitor.attributes,
    )
    retry = monitor.subscribe.retry
    batch = monitor.subscribe.batch
    return DeliverySpec(
        callback_name=webhook.name,
        target=webhook.target,
        attributes=tuple((a.type, a.key, a.value) for a in attributes),
        policy=retry.policy,
        retry_number=retry.retry_number,
        retry_delay=float(retry.retry_delay),
        batch_size=None if batch is None else batch.size,
        batch_window=60.0 if batch is None else float(batch.time_window),
    )


def validate(obj: Any, monitor_id: str, *, allow_insecure_http: bool) -> Validated:
    """Parse a definition against the Stellantis name table; every problem at once."""
    parsed = parse_monitor(obj, monitor_id=monitor_id, catalog=None)
    problems = list(parsed.problems)
    spec = None
    if parsed.monitor is not None:
        spec = delivery_spec(parsed.monitor)
        if spec is None:
            problems.append(Problem(CALLBACK_PATH, "a webhook callback is required"))
        else:
            problems.extend(target_problems(spec, allow_insecure_http, CALLBACK_PATH))
    elif (target := _raw_target(obj)) is not None:
        # the definition has other problems; still report a bad target in the same answer
        raw = DeliverySpec(callback_name="", target=target, attributes=())
        problems.extend(target_problems(raw, allow_insecure_http, CALLBACK_PATH))
    monitor = parsed.monitor if not problems else None
    return Validated(monitor, spec if not problems else None, problems, list(parsed.warnings))


def _raw_target(obj: Any) -> str | None:
    """``callback.webhook.target`` or the docs' ``callback.target`` (reference §7.5)."""
    try:
        callback = obj["subscribeParam"]["callback"]
        target = callback.get("webhook", callback).get("target")
    except (KeyError, TypeError, AttributeError):
        return None
    return target if isinstance(target, str) else None
