"""Building a ``Monitor`` from its JSON (``parse_monitor`` is the public entry, in ``model``).

Every helper records problems in the shared ``Report`` and goes on, so one pass reports all.
Bounds (``limits``) are checked before the costly steps: a monitor with too many triggers is
refused before its triggers are parsed and before its expression's truth table is computed.
"""

from __future__ import annotations

import re

from agent.monitors.delivery import read_attributes, read_subscribe
from agent.monitors.expr import (
    Expr,
    ExprError,
    Parsed,
    constant_value,
    names_of,
    parse_expression,
)
from agent.monitors.fields import Fields, Report, split_repeated
from agent.monitors.kinds import TRIGGER_KINDS
from agent.monitors.limits import (
    MAX_EXPRESSION_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_TRIGGERS,
)
from agent.monitors.model import (
    STATUSES,
    Catalog,
    Monitor,
    SubscribeParam,
    Trigger,
    and_of,
    monitor_hash,
)
from agent.monitors.names import (
    EXTENSION_TYPES,
    stellantis_info,
)
from agent.monitors.signals import with_gps

_TRIGGER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")
_TOP_KEYS = {
    "label",
    "subscribeParam",
    "attributes",
    "attributres",
    "extendedEventParam",
    "triggerParam",
    "id",
    "monitorId",
    "status",
}


def build_monitor(
    obj: object, monitor_id: str | None, catalog: Catalog | None, report: Report
) -> Monitor | None:
    fields = Fields.of(obj, "$", report)
    if fields is None:
        return None
    if catalog is not None:
        catalog = with_gps(catalog)  # position-derived names (vehicle.kinetic.speed)
    inner = fields.obj.get("monitor")
    if isinstance(inner, dict) and "triggerParam" not in fields.obj:
        # the Stellantis ``Monitor`` resource: {monitorId, monitor: MonitorParameter, status}
        wrapped = fields
        fields = Fields(inner, "$.monitor", report)
        monitor_id = monitor_id or wrapped.string("monitorId", "id")
        status = wrapped.string("status") or fields.string("status") or "Running"
    else:
        fields.unknown(_TOP_KEYS, warn_only=True)
        monitor_id = monitor_id or fields.string("id", "monitorId")
        status = fields.string("status") or "Running"
    if status not in STATUSES:
        report.problem("$.status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
    label = fields.string("label", required=True)
    subscribe = read_subscribe(fields)
    extended = _extended(fields, catalog)
    attributes = read_attributes(fields, "attributes", "attributres")
    params = fields.child("triggerParam", required=True)
    parsed = _trigger_param(params, catalog) if params is not None else None
    if report.problems or parsed is None or label is None:
        return None
    triggers, bool_exp, expression = parsed
    return Monitor(
        id=monitor_id or f"m-{monitor_hash(fields.obj)[:16]}",
        label=label,
        triggers=triggers,
        bool_exp=bool_exp,
        expression=expression,
        subscribe=subscribe or SubscribeParam(),
        extended=extended,
        attributes=attributes,
        status=status,
    )


def _extended(fields: Fields, catalog: Catalog | None) -> tuple[str, ...]:
    out: list[str] = []
    for path, item in fields.array("extendedEventParam") or []:
        if not isinstance(item, str):
            fields.report.problem(path, "expected a string")
            continue
        known = (
            item in EXTENSION_TYPES
            or item.startswith("vehicle.telemetry.")
            or stellantis_info(item) is not None
            or (catalog is not None and catalog.describe(item) is not None)
        )
        if not known:
            fields.report.warn(path, f"{item!r} is not available here; it will be left out")
        out.append(item)
    return tuple(out)


def _trigger_param(
    params: Fields, catalog: Catalog | None
) -> tuple[tuple[Trigger, ...], str, Expr] | None:
    report = params.report
    old = params.has("timeZoneTriggers", "dataTriggers")
    new = params.has("triggers", "boolExp", "bool.exp")
    if old and new:
        report.problem(
            params.path, "mixes the v2 form (timeZoneTriggers/dataTriggers) with triggers/boolExp"
        )
        return None
    if old:
        return _v2_triggers(params, catalog)
    params.unknown({"triggers", "boolExp", "bool.exp"})
    items = params.array("triggers", required=True)
    if "bool.exp" in params.obj:
        report.warn(params.at("bool.exp"), "read as boolExp (quickstart spelling)")
    text = params.string("boolExp", "bool.exp", required=True)
    if items is not None and not 1 <= len(_unfold(items, Report())) <= MAX_TRIGGERS:
        report.problem(params.at("triggers"), f"needs 1 to {MAX_TRIGGERS} triggers")
        if len(items) > MAX_TRIGGERS:  # the triggers are not read, the truth table not built
            if text is not None:
                _syntax(params, text)
            return None
    triggers, declared = _triggers(items or [], catalog, report)
    if text is None or items is None:
        return None
    return _expression(params, text, triggers, declared)


def _triggers(
    items: list[tuple[str, object]], catalog: Catalog | None, report: Report
) -> tuple[dict[str, Trigger], set[str]]:
    """Valid triggers by name, and every declared name (valid or not)."""
    triggers: dict[str, Trigger] = {}
    declared: set[str] = set()
    for path, item in _unfold(items, report):
        fields = Fields.of(item, path, report)
        if fields is None:
            continue
        fields.unknown({"name", *TRIGGER_KINDS})
        name = fields.string("name", required=True)
        if name is not None and not _TRIGGER_NAME.match(name):
            report.problem(fields.at("name"), f"{name!r} is not a valid trigger name")
            name = None
        elif name is not None and name in declared:
            report.problem(fields.at("name"), f"duplicate trigger name {name!r}")
            name = None
        if name is not None:
            declared.add(name)
        kinds = [k for k in TRIGGER_KINDS if k in fields.obj]
        if len(kinds) != 1:
            report.problem(path, f"needs exactly one of {', '.join(TRIGGER_KINDS)}")
            continue
        body = fields.child(kinds[0])
        if body is None:
            continue
        trigger = TRIGGER_KINDS[kinds[0]].parse(name or "?", body, catalog)
        if trigger is not None and name is not None:
            triggers[name] = trigger
    return triggers, declared


def _unfold(items: list[tuple[str, object]], report: Report) -> list[tuple[str, object]]:
    """Several triggers written in one object with repeated keys (the docs' examples) become
    separate triggers, ``triggers[0][1]``, ``triggers[0][2]``..."""
    out: list[tuple[str, object]] = []
    for path, item in items:
        parts = split_repeated(item, "name")
        if len(parts) == 1:
            out.append((path, item))
            continue
        report.warn(
            path, f"{len(parts)} triggers written in one object (repeated keys): read apart"
        )
        out += [(f"{path}[{k}]", part) for k, part in enumerate(parts)]
    return out


def _syntax(params: Fields, text: str) -> Parsed | None:
    """The parsed boolExp within its bounds, or None with the problem reported."""
    try:
        return parse_expression(
            text, max_length=MAX_EXPRESSION_LENGTH, max_depth=MAX_EXPRESSION_DEPTH
        )
    except ExprError as exc:
        params.report.problem(params.at("boolExp"), str(exc))
        return None


def _expression(
    params: Fields, text: str, triggers: dict[str, Trigger], declared: set[str]
) -> tuple[tuple[Trigger, ...], str, Expr] | None:
    report = params.report
    path = params.at("boolExp")
    parsed = _syntax(params, text)
    if parsed is None:
        return None
    if parsed.closed_parens:
        report.warn(path, f"{parsed.closed_parens} missing ')' added at the end")
        text = text.rstrip() + ")" * parsed.closed_parens
    used = names_of(parsed.expr)
    for name in sorted(used - declared):
        report.problem(path, f"names {name!r}, which is not a trigger")
    for name in sorted(declared - used):
        report.warn(path, f"trigger {name!r} is not used")
    bounded = used <= declared and len(used) <= MAX_TRIGGERS  # at most 2^10 assignments
    if bounded and (constant := constant_value(parsed.expr)) is not None:
        report.problem(path, f"is always {'true' if constant else 'false'}")
    if report.problems:
        return None
    return tuple(triggers.values()), text, parsed.expr


def _v2_triggers(
    params: Fields, catalog: Catalog | None
) -> tuple[tuple[Trigger, ...], str, Expr] | None:
    report = params.report
    report.warn(params.path, "deprecated v2 form: every trigger is ANDed")
    params.unknown({"timeZoneTriggers", "dataTriggers"})
    triggers: dict[str, Trigger] = {}
    tz = params.child("timeZoneTriggers")
    if tz is not None:
        tz.unknown({"zoneTrigger", "timeTrigger"})
        zone = tz.child("zoneTrigger")
        if zone is not None and (z := TRIGGER_KINDS["zone"].parse("zone", zone, catalog)):
            triggers["zone"] = z
        time = tz.child("timeTrigger")
        if time is not None and (t := TRIGGER_KINDS["time"].parse("time", time, catalog)):
            triggers["time"] = t
    data_items = params.array("dataTriggers") or []
    if len(data_items) + len(triggers) > MAX_TRIGGERS:
        report.problem(params.at("dataTriggers"), f"needs at most {MAX_TRIGGERS} triggers")
        return None
    for index, (path, item) in enumerate(data_items):
        body = Fields.of(item, path, report)
        if body is None:
            continue
        name = f"data{index + 1}"
        if (checked := TRIGGER_KINDS["data"].parse(name, body, catalog)) is not None:
            triggers[name] = checked
    if not triggers:
        report.problem(params.path, "has no trigger")
    if report.problems:
        return None
    return tuple(triggers.values()), " & ".join(triggers), and_of(list(triggers))
