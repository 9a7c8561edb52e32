"""The scan cached per VIN in state_dir: a restart on a known car asks the VIN only; another
VIN, an old entry or a broken file mean a full scan (the file guarded, errors counted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.obd.addressing import Addressing, Ecu
from agent.obd.scan_cache import MAX_BYTES, MAX_VINS, ScanCache, cache_path
from agent.obd.service import ObdService
from agent.obd.settings import ObdConfig
from tests.agent.obd.test_obd_service import FAST
from tests.agent.obd.twin_car import VIN, bench, wait_for

ECM = Ecu(0x7E8, 0x7E0, False)
TCM = Ecu(0x7E9, 0x7E1, False)
NOW = 1_700_000_000.0  # an injected wall clock


def _cache(path: Path, now: float = NOW, max_age: float = 3600.0) -> ScanCache:
    return ScanCache(path, Addressing(False), max_age, wall=lambda: now)


def test_a_stored_scan_is_found_by_vin_until_it_is_old(tmp_path: Path) -> None:
    path = cache_path(tmp_path, "diag/bus")
    assert path.name == "obd-scan-diag_bus.json"
    _cache(path).store(VIN, [ECM, TCM], {ECM: frozenset({0x0C, 0x2F}), TCM: frozenset({0x05})})
    fresh = _cache(path, NOW + 3600).lookup(VIN)
    assert fresh is not None and fresh.ecus == (ECM, TCM)
    assert fresh.supported == {ECM: frozenset({0x0C, 0x2F}), TCM: frozenset({0x05})}
    assert _cache(path, NOW + 3601).lookup(VIN) is None  # older than max_age
    assert _cache(path, NOW - 60).lookup(VIN) is None  # scanned "in the future": clock moved
    other = _cache(path)
    assert other.lookup("VF3ZZZZZZZZZZZZZZ") is None  # another car
    assert other.counters == {"hits": 0, "misses": 1, "errors": 0, "writes": 0}
    # the 29-bit bus of the same name does not take the 11-bit cars
    assert ScanCache(path, Addressing(True), 3600.0, wall=lambda: NOW).lookup(VIN) is None


def test_at_most_some_cars_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    for i in range(MAX_VINS + 3):
        _cache(path, NOW + i).store(f"VF3{i:014d}", [ECM], {ECM: frozenset({0x0D})})
    kept = json.loads(path.read_text())["vins"]
    assert len(kept) == MAX_VINS and f"VF3{0:014d}" not in kept  # the oldest dropped
    assert _cache(path, NOW + 20).lookup(f"VF3{MAX_VINS + 2:014d}") is not None


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"version": 2, "addressing": "11", "vins": {}}',
        b'{"version": 1, "addressing": "11", "vins": []}',
        b'{"version": 1, "addressing": "11", "vins": {"short": {}}}',
        b'{"version": 1, "addressing": "11", "vins": {"VF3ABCDEF12345678": '
        b'{"scannedAt": NaN, "ecus": [{"answerId": 2024, "pids": [12]}]}}}',
        b'{"version": 1, "addressing": "11", "vins": {"VF3ABCDEF12345678": '
        b'{"scannedAt": 1700000000, "ecus": [{"answerId": 291, "pids": [12]}]}}}',  # no OBD id
        b'{"version": 1, "addressing": "11", "vins": {"VF3ABCDEF12345678": '
        b'{"scannedAt": 1700000000, "ecus": [{"answerId": 2024, "pids": [256]}]}}}',
        b'{"version": 1, "addressing": "11", "vins": {"VF3ABCDEF12345678": '
        b'{"scannedAt": true, "ecus": []}}}',
        b"[" * 100_000,
        b" " * (MAX_BYTES + 1),
        b"\xff\xfe\x00",
    ],
)
def test_a_broken_file_is_counted_and_ignored(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    cache = _cache(path)
    assert cache.lookup(VIN) is None
    assert cache.counters["errors"] == 1
    cache.store(VIN, [ECM], {ECM: frozenset({0x0D})})  # a full scan writes it again
    assert _cache(path).lookup(VIN) is not None


def test_an_unwritable_state_dir_is_counted(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = _cache(blocker / "sub" / "c.json")
    cache.store(VIN, [ECM], {ECM: frozenset({0x0D})})
    assert cache.counters["errors"] == 2 and cache.counters["writes"] == 0  # read and write


def _run(tmp_path: Path, config: ObdConfig = FAST) -> tuple[ObdService, list[tuple[str, bytes]]]:
    """One agent start against the twin until fuel values come; the requests the car got."""
    with bench() as b:
        samples: list[object] = []
        service = ObdService(config, samples.append, link_factory=b.link, cache_dir=tmp_path)
        service.want({"vehicle.energy.fuel.level"})
        service.start()
        try:
            wait_for(lambda: service.plan.scanned and len(samples) >= 1)
        finally:
            service.stop()
        return service, list(b.car.requests)


def _bitmaps(requests: list[tuple[str, bytes]]) -> int:
    return sum(1 for _, r in requests if r[:1] == b"\x01" and r[1] % 0x20 == 0)


def test_a_restart_on_a_known_car_asks_the_vin_only(tmp_path: Path) -> None:
    first, asked = _run(tmp_path)
    assert first.counters["full_scans"] == 1 and _bitmaps(asked) >= 4
    stored = json.loads(cache_path(tmp_path, FAST.name).read_text())
    assert set(stored["vins"]) == {VIN}
    second, asked = _run(tmp_path)
    assert second.counters["full_scans"] == 0 and _bitmaps(asked) == 0
    assert second.snapshot()["scan_cache.hits"] == 1
    assert second.capabilities is not None and second.capabilities.vin == VIN
    assert second.capabilities.pids == first.capabilities.pids  # type: ignore[union-attr]
    # scan_cache_age = 0: no cache at all, the full scan each start
    third, asked = _run(tmp_path / "none", FAST.__class__(**{**_fields(FAST), "scan_cache_age": 0}))
    assert third.cache is None and third.counters["full_scans"] == 1
    assert not (tmp_path / "none").exists()


def _fields(config: ObdConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}
