"""gpsd as a GPS source: its JSON reports converted to our Fix (pure reader), then a GpsdSource
against a fake gpsd on loopback that sends junk, drops the connection and takes it back."""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from agent.gps.gpsd import GpsdAddress, GpsdReader, parse_gpsd_url, watch_command
from agent.gps.gpsd_source import GpsdSource
from agent.gps.source import GpsConfig, make_fix_source
from agent.model import FixType
from agent.monitors.zone import FixGate
from tests.agent.gps.gps_support import Collector, wait_until

VERSION = {"class": "VERSION", "release": "3.25", "proto_major": 3, "proto_minor": 15}
SKY = {"class": "SKY", "device": "/dev/ttyACM0", "hdop": 0.8, "uSat": 11, "nSat": 23}
TPV = {
    "class": "TPV",
    "device": "/dev/ttyACM0",
    "mode": 3,
    "status": 2,
    "time": "2026-12-02T14:30:05.000Z",
    "lat": 48.8566,
    "lon": 2.3522,
    "altMSL": 35.2,
    "speed": 12.5,
    "track": 271.3,
}
NO_FIX = {"class": "TPV", "device": "/dev/ttyACM0", "mode": 1, "time": "2026-12-02T14:30:06Z"}
FAST = {"read_timeout": 0.05, "reopen_min": 0.02, "reopen_max": 0.1}


def line(report: dict[str, object]) -> bytes:
    return json.dumps(report).encode("ascii") + b"\r\n"


def test_tpv_and_sky_become_one_fix() -> None:
    reader = GpsdReader()
    fixes = reader.feed(line(VERSION) + line(SKY) + line(TPV), 100.0)
    assert len(fixes) == 1
    fix = fixes[0]
    assert (fix.latitude, fix.longitude, fix.altitude) == (48.8566, 2.3522, 35.2)
    assert fix.speed_kmh == pytest.approx(45.0) and fix.course == 271.3
    assert fix.fix_type is FixType.FIX_3D and fix.quality == 2  # status 2: DGPS
    assert (fix.hdop, fix.satellites) == (0.8, 11)
    assert fix.utc == datetime(2026, 12, 2, 14, 30, 5, tzinfo=UTC)
    assert fix.timestamp == 100.0  # the receive time, not the receiver's
    assert FixGate(max_hdop=1.0, min_satellites=6).passes(fix, 100.5)
    assert reader.counters["ignored"] == 1 and reader.counters["reports"] == 3


def test_no_fix_mode_has_no_position_and_old_sky_is_not_used() -> None:
    reader = GpsdReader(sky_max_age=5.0)
    reader.feed(line(SKY), 100.0)
    fix = reader.feed(line(NO_FIX), 101.0)[0]
    assert not fix.has_position and fix.fix_type is FixType.NONE and fix.quality == 0
    late = reader.feed(line(TPV), 110.0)[0]
    assert late.has_position and late.hdop is None and late.satellites is None
    assert reader.counters["fixes"] == 2 and reader.counters["fixes_no_position"] == 1


def test_older_gpsd_sky_counts_used_satellites_and_alt_is_the_altitude() -> None:
    sky = {"class": "SKY", "hdop": 1.4, "satellites": [{"PRN": n, "used": n < 5} for n in range(9)]}
    tpv = {k: v for k, v in TPV.items() if k not in ("altMSL", "status")} | {"alt": 120.0}
    fix = GpsdReader().feed(line(sky) + line(tpv), 1.0)[0]
    assert (fix.satellites, fix.hdop, fix.altitude, fix.quality) == (5, 1.4, 120.0, 1)


def test_every_bad_line_is_counted_and_the_stream_goes_on() -> None:
    reader = GpsdReader(max_line=512)
    junk = [
        b"garbage that is no json\r\n",
        b"[1, 2, 3]\r\n",
        b'{"no_class": 1}\r\n',
        line(TPV | {"lat": "48.8"}),
        line(TPV | {"lat": 123.0}),
        line(TPV | {"mode": 7}),
        line(TPV | {"time": "yesterday"}),
        b'{"class":"TPV","lat":' + b"1" * 400 + b"e999}\r\n",  # inf: out of range
        b"\xff\xfe\r\n",
        b"x" * 2000,
        b"still the same overlong line\r\n",
        line({"class": "ERROR", "message": "unrecognized request"}),
    ]
    fixes = []
    for chunk in junk:
        fixes += reader.feed(chunk, 5.0)
    fixes += reader.feed(line(TPV), 6.0)
    assert len(fixes) == 1 and fixes[0].latitude == 48.8566
    counters = reader.counters
    assert counters["skipped_not_json"] == 4
    assert counters["skipped_bad_report"] == 5
    assert counters["skipped_overlong"] == 1
    assert counters["gpsd_errors"] == 1


def test_bytes_split_anywhere_give_the_same_fixes() -> None:
    stream = line(VERSION) + line(SKY) + line(TPV) + line(NO_FIX) + line(TPV)
    whole = GpsdReader().feed(stream, 1.0)
    for cut in range(1, len(stream)):
        reader = GpsdReader()
        assert reader.feed(stream[:cut], 1.0) + reader.feed(stream[cut:], 1.0) == whole


def test_urls_and_the_watch_request() -> None:
    assert parse_gpsd_url("gpsd://127.0.0.1") == GpsdAddress("127.0.0.1", 2947, None)
    assert parse_gpsd_url("gpsd://[::1]:3000/dev/ttyACM0") == GpsdAddress(
        "::1", 3000, "/dev/ttyACM0"
    )
    for bad in ("gpsd://", "gpsd://host:99999", "gpsd://host:port", "gpsd://h?x=1"):
        with pytest.raises(ValueError):
            parse_gpsd_url(bad)
    assert json.loads(watch_command("/dev/ttyACM0")[7:]) == {
        "enable": True,
        "json": True,
        "device": "/dev/ttyACM0",
    }
    assert watch_command().endswith(b"\n") and len(watch_command()) <= 80


def test_config_accepts_gpsd_and_names_a_bad_url(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('vin = "V1"\n[gps]\nport = "gpsd://127.0.0.1:2947"\n', encoding="utf-8")
    config = load_config(path, env={})
    assert config.gps is not None and config.gps.is_gpsd
    assert isinstance(make_fix_source(config.gps, Collector()), GpsdSource)
    path.write_text('vin = "V1"\n[gps]\nport = "gpsd://127.0.0.1:x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert [p.path for p in caught.value.problems] == ["$.gps.port"]


class FakeGpsd:
    """A gpsd on loopback: greets with VERSION, waits for ?WATCH, then sends what it is given.

    ``hang_up()`` closes the current client; the next connection is served the same way."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.watches: list[bytes] = []
        self.clients: queue.Queue[socket.socket] = queue.Queue()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.sendall(line(VERSION))
            request = b""
            while b"\n" not in request:
                chunk = client.recv(256)
                if not chunk:
                    break
                request += chunk
            self.watches.append(request)
            client.sendall(line({"class": "DEVICES", "devices": []}))
            self.clients.put(client)

    def client(self) -> socket.socket:
        return self.clients.get(timeout=10.0)

    def close(self) -> None:
        self._listener.close()
        while not self.clients.empty():
            self.clients.get().close()


@pytest.fixture
def gpsd() -> Iterator[FakeGpsd]:
    server = FakeGpsd()
    yield server
    server.close()


def test_source_reads_a_fake_gpsd_through_junk_and_a_reconnect(gpsd: FakeGpsd) -> None:
    fixes = Collector()
    source = GpsdSource(GpsConfig(f"gpsd://127.0.0.1:{gpsd.port}/dev/ttyACM0", **FAST), fixes)
    source.start()
    try:
        first = gpsd.client()
        first.sendall(b"not json\r\n" + line(SKY) + line(TPV | {"lat": "bad"}) + line(TPV))
        got = fixes.take(1)
        assert got[0].latitude == 48.8566 and got[0].satellites == 11
        first.close()  # gpsd restarted, or the link dropped
        second = gpsd.client()
        second.sendall(line(NO_FIX) + line(TPV | {"lat": 45.0}))
        again = fixes.take(2)
        second.close()
        wait_until(lambda: source.counters["port_losses"] == 2, what="second loss")
    finally:
        source.stop()
    assert not source.running
    assert [f.has_position for f in again] == [False, True] and again[1].latitude == 45.0
    assert again[1].satellites is None  # the SKY of the first connection is forgotten
    assert len(gpsd.watches) >= 2
    assert json.loads(gpsd.watches[0].split(b"=", 1)[1])["device"] == "/dev/ttyACM0"
    counters = source.counters
    assert counters["port_opens"] >= 2 and counters["callback_errors"] == 0
    assert counters["skipped_not_json"] == 1 and counters["skipped_bad_report"] == 1
    assert counters["fixes"] == 3 and counters["ignored"] >= 4  # VERSION + DEVICES, twice


def test_source_retries_while_gpsd_is_not_there() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed below: nothing listens there any more
    fixes = Collector()
    source = GpsdSource(GpsConfig(f"gpsd://127.0.0.1:{port}", **FAST), fixes)
    source.start()
    try:
        wait_until(lambda: source.counters["port_open_failures"] >= 3, what="retries")
    finally:
        source.stop()
    assert not source.running and fixes.empty()
