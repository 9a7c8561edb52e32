"""Monitors files for ``check`` and ``replay``: one monitor object or a JSON array of them.

Reading raises ``OSError`` for a file that cannot be read (the commands exit 2) and
``MonitorError`` for one that is not JSON or passes the bounds of ``limits`` (a problem of its
content: exit 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import MonitorError, Problem
from agent.monitors.limits import MAX_MONITORS_FILE_BYTES, load_monitor_json
from agent.monitors.model import Catalog, MonitorParse, parse_monitor


@dataclass(frozen=True, slots=True)
class Definition:
    source: str  # "monitors.json" or "monitors.json[2]"
    obj: object


@dataclass(frozen=True, slots=True)
class Checked:
    definition: Definition
    parse: MonitorParse


def read_definitions(path: Path) -> list[Definition]:
    with path.open("rb") as stream:
        data = stream.read(MAX_MONITORS_FILE_BYTES + 1)
    try:
        doc = load_monitor_json(data, max_bytes=MAX_MONITORS_FILE_BYTES, tree=False)
    except MonitorError as exc:
        problems = [Problem(p.path, f"{path}: {p.message}") for p in exc.problems]
        raise MonitorError(problems) from exc
    if isinstance(doc, list):
        return [Definition(f"{path}[{i}]", item) for i, item in enumerate(doc)]
    return [Definition(str(path), doc)]


def check_definitions(
    definitions: Sequence[Definition], catalog: Catalog | None, *, delivery_problems: bool = False
) -> list[Checked]:
    """Parse every definition (ids from the objects); a repeated id is a problem."""
    out: list[Checked] = []
    seen: dict[str, str] = {}
    for definition in definitions:
        parse = parse_monitor(definition.obj, catalog=catalog, delivery_problems=delivery_problems)
        ident = parse.monitor.id if parse.monitor is not None else _raw_id(definition.obj)
        if ident is not None and ident in seen:
            problem = Problem("$.id", f"id {ident!r} is already used by {seen[ident]}")
            parse = MonitorParse(None, [*parse.problems, problem], parse.warnings)
        elif ident is not None:
            seen[ident] = definition.source
        out.append(Checked(definition, parse))
    return out


def _raw_id(obj: object) -> str | None:
    if isinstance(obj, dict):
        ident = obj.get("id", obj.get("monitorId"))
        return ident if isinstance(ident, str) else None
    return None
