"""The supported-PID scan of a car, cached per VIN in the agent's state_dir (issue 16).

A full scan costs a functional 01 00, up to eight bitmap requests per ECU and a VIN request:
a dozen requests at the bus budget (one a second) on every restart. With the cache, a restart
on a known car asks the VIN alone (one functional 09 02) and takes the ECUs and their PIDs
from the file; a different VIN, no VIN answer, an entry older than ``scan_cache_age`` or a
file that cannot be read means a full scan (the file is then written again).

The file is the agent's own but lives on disk: it is read through a guard (size, JSON, every
field checked); anything unexpected is counted in ``counters["errors"]``, logged and treated
as "no entry", never raised. Written atomically (a temporary file renamed), at most
``MAX_VINS`` cars (the oldest dropped): a gateway moved between a few cars keeps each.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.obd.addressing import Addressing, Ecu

log = logging.getLogger(__name__)
VERSION = 1
MAX_BYTES = 256 * 1024
MAX_VINS = 16
MAX_ECUS = 64
_VIN = re.compile(r"^[A-Z0-9]{17}$")


@dataclass(frozen=True, slots=True)
class CachedScan:
    vin: str
    at: float  # wall time of the full scan
    ecus: tuple[Ecu, ...]
    supported: dict[Ecu, frozenset[int]]


class CacheError(ValueError):
    """The cache file says something unexpected (counted, then a full scan)."""


def cache_path(state_dir: Path, bus: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in bus) or "obd"
    return state_dir / f"obd-scan-{safe}.json"


class ScanCache:
    def __init__(
        self,
        path: Path,
        addressing: Addressing,
        max_age: float,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.addressing = addressing
        self.max_age = max_age
        self.wall = wall
        self.counters = {"hits": 0, "misses": 0, "errors": 0, "writes": 0}

    def lookup(self, vin: str) -> CachedScan | None:
        """The cached scan of ``vin`` when fresh (0 <= age <= max_age), else None."""
        entries = self._read()
        found = entries.get(vin)
        age = None if found is None else self.wall() - found.at
        if found is None or age is None or not 0 <= age <= self.max_age:
            self.counters["misses"] += 1
            return None
        self.counters["hits"] += 1
        return found

    def store(self, vin: str, ecus: list[Ecu], supported: dict[Ecu, frozenset[int]]) -> None:
        entries = self._read()
        entries[vin] = CachedScan(vin, self.wall(), tuple(ecus), dict(supported))
        kept = sorted(entries.values(), key=lambda e: e.at)[-MAX_VINS:]
        document = {
            "version": VERSION,
            "addressing": "29" if self.addressing.extended else "11",
            "vins": {e.vin: _entry_json(e) for e in kept},
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(document, indent=1), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:  # a full or read-only disk: the agent polls on without a cache
            self.counters["errors"] += 1
            log.warning("OBD scan cache %s not written: %s", self.path, exc)
            return
        self.counters["writes"] += 1

    def _read(self) -> dict[str, CachedScan]:
        try:
            with self.path.open("rb") as file:
                raw = file.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            return self._bad(f"unreadable: {exc}")
        try:
            if len(raw) > MAX_BYTES:
                raise CacheError(f"larger than {MAX_BYTES} bytes")
            return self._parse(json.loads(raw))
        except (CacheError, ValueError, RecursionError) as exc:  # JSONDecodeError too
            return self._bad(str(exc))

    def _bad(self, why: str) -> dict[str, CachedScan]:
        self.counters["errors"] += 1
        log.warning("OBD scan cache %s ignored (a full scan follows): %s", self.path, why)
        return {}

    def _parse(self, document: Any) -> dict[str, CachedScan]:
        if not isinstance(document, dict) or document.get("version") != VERSION:
            raise CacheError("not a version 1 scan cache")
        addressing = "29" if self.addressing.extended else "11"
        if document.get("addressing") != addressing:
            return {}  # written for the other addressing: not this bus's cars
        vins = document.get("vins")
        if not isinstance(vins, dict) or len(vins) > MAX_VINS:
            raise CacheError("vins: expected an object of at most 16 cars")
        return {vin: self._entry(vin, entry) for vin, entry in vins.items()}

    def _entry(self, vin: str, entry: Any) -> CachedScan:
        if not _VIN.match(vin) or not isinstance(entry, dict):
            raise CacheError(f"bad entry {vin[:20]!r}")
        at, ecus = entry.get("scannedAt"), entry.get("ecus")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise CacheError(f"{vin}: scannedAt is no time")
        if not isinstance(ecus, list) or not 1 <= len(ecus) <= MAX_ECUS:
            raise CacheError(f"{vin}: ecus: expected 1 to {MAX_ECUS}")
        found: dict[Ecu, frozenset[int]] = {}
        for item in ecus:
            answer_id = item.get("answerId") if isinstance(item, dict) else None
            pids = item.get("pids") if isinstance(item, dict) else None
            ecu = (
                self.addressing.ecu_for_answer(answer_id)
                if isinstance(answer_id, int) and not isinstance(answer_id, bool)
                else None
            )
            if ecu is None or not isinstance(pids, list):
                raise CacheError(f"{vin}: bad ECU {str(item)[:40]}")
            if not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 0xFF
                       for p in pids):  # fmt: skip
                raise CacheError(f"{vin}: PIDs are 1 to 255")
            found[ecu] = frozenset(pids)
        ordered = tuple(sorted(found, key=lambda e: e.answer_id))
        return CachedScan(vin, float(at), ordered, found)


def _entry_json(entry: CachedScan) -> dict[str, object]:
    return {
        "scannedAt": entry.at,
        "ecus": [
            {"answerId": e.answer_id, "pids": sorted(entry.supported.get(e, frozenset()))}
            for e in entry.ecus
        ],
    }
