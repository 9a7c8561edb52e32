"""The one reader of monitors files, for ``check``, ``replay`` and ``run`` alike (issue 13).

A monitors file holds one monitor object or a JSON array of them. Every entry point reads it
through ``read_monitors_file`` and judges it through ``check_definition``, so a file that
``check`` accepts is read the same way by ``run``:

- bounds of ``limits`` first (file size, nesting), then the JSON, keeping repeated keys as
  ``fields.loads_monitor`` does everywhere (the parser reports them);
- each entry parsed on the vehicle's terms: problems of the delivery part (``subscribeParam``)
  are warnings, since the backend delivers webhooks and judges them;
- an id used twice in the file (or across the files of one reading) is a problem of the
  second entry, which is refused; the first one keeps its id.

Reading raises ``OSError`` for a file that cannot be read and ``MonitorError`` for one that is
not JSON or passes the bounds (a problem of its content). Judging is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import MonitorError, Problem
from agent.monitors.limits import MAX_MONITORS_FILE_BYTES, load_monitor_json
from agent.monitors.model import Catalog, MonitorParse, parse_monitor


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One monitor object of a monitors file, as read (not yet judged)."""

    source: str  # "monitors.json" or "monitors.json[2]"
    obj: object


@dataclass(frozen=True, slots=True)
class Checked:
    entry: FileEntry
    parse: MonitorParse


@dataclass(slots=True)
class SeenIds:
    """The ids taken so far in one reading, with the entry that took each."""

    by_id: dict[str, str] = field(default_factory=dict)


def read_monitors_file(path: Path) -> list[FileEntry]:
    with path.open("rb") as stream:
        data = stream.read(MAX_MONITORS_FILE_BYTES + 1)
    try:
        doc = load_monitor_json(data, max_bytes=MAX_MONITORS_FILE_BYTES, tree=False)
    except MonitorError as exc:
        problems = [Problem(p.path, f"{path}: {p.message}") for p in exc.problems]
        raise MonitorError(problems) from exc
    if isinstance(doc, list):
        return [FileEntry(f"{path}[{i}]", item) for i, item in enumerate(doc)]
    return [FileEntry(str(path), doc)]


def check_definition(entry: FileEntry, catalog: Catalog | None, seen: SeenIds) -> Checked:
    """Parse one entry on the vehicle's terms (ids from the object); a taken id is a problem."""
    parse = parse_monitor(entry.obj, catalog=catalog, delivery_problems=False)
    ident = parse.monitor.id if parse.monitor is not None else raw_id(entry.obj)
    if ident is not None and ident in seen.by_id:
        problem = Problem("$.id", f"id {ident!r} is already used by {seen.by_id[ident]}")
        parse = MonitorParse(None, [*parse.problems, problem], parse.warnings)
    elif ident is not None:
        seen.by_id[ident] = entry.source
    return Checked(entry, parse)


def check_definitions(entries: Sequence[FileEntry], catalog: Catalog | None) -> list[Checked]:
    """Every entry judged by ``check_definition``, in order, sharing one set of taken ids."""
    seen = SeenIds()
    return [check_definition(entry, catalog, seen) for entry in entries]


def raw_id(obj: object) -> str | None:
    """The id an unparsable entry claims, if any (to report it and to keep it taken)."""
    if isinstance(obj, dict):
        ident = obj.get("id", obj.get("monitorId"))
        return ident if isinstance(ident, str) else None
    return None
