"""GpsSource against real pseudo-terminals, a real TCP socket (socket://) and recorded files."""

from __future__ import annotations

import fcntl
import os
import random
import socket
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import Problem
from agent.gps.nmea import read_nmea_file
from agent.gps.source import FixSource, GpsConfig, GpsSource, MemoryFixSource
from agent.model import Fix
from tests.agent.gps.gps_sentences import (
    T0,
    assert_fix_is,
    clean_10hz_stream,
    drive,
    messy_stream,
)
from tests.agent.gps.gps_support import CAPTURES, Collector, Pty, wait_until

StartSource = Callable[[GpsConfig], tuple[GpsSource, Collector]]
FAST = {"epoch_timeout": 0.2, "read_timeout": 0.05, "reopen_min": 0.02, "reopen_max": 0.1}


def test_clean_stream_through_a_pty_at_the_configured_baud_rate(
    make_pty: Callable[[], Pty], start_source: StartSource
) -> None:
    pty = make_pty()
    source, fixes = start_source(GpsConfig(pty.path, baudrate=115200, **FAST))
    wait_until(lambda: source.counters["port_opens"] == 1, what="port open")
    assert termios.tcgetattr(pty.slave)[4] == termios.B115200  # pyserial set the line speed
    truths = drive(T0, 5)
    before = time.time()
    pty.write(b"".join(t.epoch() for t in truths))
    got = fixes.take(5)  # the last epoch closes on epoch_timeout: nothing follows it
    for fix, truth in zip(got, truths, strict=True):
        assert_fix_is(fix, truth)
        assert before <= fix.timestamp <= time.time()  # stamped on receipt, by the source
    source.stop()
    stream_length = sum(len(t.epoch()) for t in truths)
    expected = dict.fromkeys(source.counters, 0)
    expected.update(bytes=stream_length, lines=35, sentences=30, ignored=5, fixes=5, port_opens=1)
    assert source.counters == expected  # every counter, skips all zero


def test_messy_stream_through_a_pty_in_odd_chunks(
    make_pty: Callable[[], Pty], start_source: StartSource
) -> None:
    builder = messy_stream()
    pty = make_pty()
    source, fixes = start_source(GpsConfig(pty.path, baudrate=9600, **FAST))
    wait_until(lambda: source.counters["port_opens"] == 1, what="port open")
    stream = builder.stream()
    rng = random.Random(3)
    pos = 0
    while pos < len(stream):  # bytes split anywhere, as a UART delivers them
        step = rng.randint(1, 97)
        pty.write(stream[pos : pos + step])
        pos += step
    got = fixes.take(len(builder.expected))
    for fix, (truth, without) in zip(got, builder.expected, strict=True):
        assert_fix_is(fix, truth, without)
    wait_until(lambda: source.counters["bytes"] == len(stream), what="all bytes read")
    source.stop()  # flush: the unfinished last line is counted now
    counters = source.counters
    expected = {name: builder.counters().get(name, 0) for name in counters}
    expected.update(port_opens=1, port_open_failures=0, port_losses=0, callback_errors=0)
    assert counters == expected
    assert fixes.empty()


def test_unplugged_receiver_is_reopened_with_backoff(
    tmp_path: Path, make_pty: Callable[[], Pty], start_source: StartSource
) -> None:
    link = tmp_path / "gps0"  # what udev would give: a stable name for a device that comes and goes
    first = make_pty()
    link.symlink_to(first.path)
    source, fixes = start_source(GpsConfig(str(link), baudrate=38400, **FAST))
    wait_until(lambda: source.counters["port_opens"] == 1, what="first open")
    before, after = drive(T0, 2)
    first.write(before.epoch())
    assert_fix_is(fixes.take(1)[0], before)

    first.close()  # unplug: the device and its node go away
    link.unlink()
    wait_until(lambda: source.counters["port_losses"] == 1, what="loss noticed")
    wait_until(lambda: source.counters["port_open_failures"] >= 2, what="reopen attempts")
    assert source.running  # it never gives up

    second = make_pty()  # plug back in: a new tty behind the same name
    link.symlink_to(second.path)
    wait_until(lambda: source.counters["port_opens"] == 2, what="reopen")
    second.write(after.epoch())
    assert_fix_is(fixes.take(1)[0], after)
    counters = source.counters
    assert counters["port_losses"] == 1 and counters["fixes"] == 2


def test_socket_url_is_read_and_reconnected() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    truths = drive(T0, 2)

    fixes = Collector()
    # The epoch ends at the hang-up, not after 0.5 s of silence: a reader thread starved on a
    # loaded machine must not split one epoch sent at once into two reads 0.5 s apart.
    slow_epochs = {**FAST, "epoch_timeout": 30.0}
    source = GpsSource(GpsConfig(f"socket://127.0.0.1:{port}", **slow_epochs), fixes)

    def serve() -> None:
        for opens, truth in enumerate(truths, start=1):  # one connection per epoch, then hang up
            conn, _ = server.accept()
            with conn:
                # pyserial's socket:// open() discards what is already waiting: send after it
                wait_until(lambda n=opens: source.counters["port_opens"] == n, what="open")
                conn.sendall(truth.epoch())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    source.start()
    try:
        got = fixes.take(2)
        for fix, truth in zip(got, truths, strict=True):
            assert_fix_is(fix, truth)
        wait_until(lambda: source.counters["port_losses"] >= 1, what="hang-up noticed")
        assert source.counters["port_opens"] >= 2
    finally:
        source.stop()
        server.close()
        thread.join(5)
    assert not source.running


def test_a_failing_callback_is_counted_and_reading_goes_on(make_pty: Callable[[], Pty]) -> None:
    pty = make_pty()
    seen: list[Fix] = []

    def on_fix(fix: Fix) -> None:
        seen.append(fix)
        if len(seen) == 1:
            raise RuntimeError("consumer bug")

    source = GpsSource(GpsConfig(pty.path, **FAST), on_fix)
    source.start()
    try:
        wait_until(lambda: source.counters["port_opens"] == 1, what="port open")
        pty.write(b"".join(t.epoch() for t in drive(T0, 3)))
        wait_until(lambda: len(seen) == 3, what="three fixes")
    finally:
        source.stop()
    assert source.counters["callback_errors"] == 1 and source.counters["port_losses"] == 0


def test_file_replay_fast_delivers_the_recording_then_ends(tmp_path: Path) -> None:
    builder = clean_10hz_stream(30)
    path = tmp_path / "drive.nmea"
    path.write_bytes(builder.stream())
    fixes = Collector()
    source = GpsSource(GpsConfig(str(path), replay_pace="fast"), fixes)
    source.start()
    got = fixes.take(30)
    for fix, (truth, without) in zip(got, builder.expected, strict=True):
        assert_fix_is(fix, truth, without)
    wait_until(lambda: not source.running, what="replay end")
    source.stop()
    assert source.counters["fixes"] == 30 and source.counters["port_losses"] == 0


def test_file_replay_realtime_keeps_order_and_stops_promptly(tmp_path: Path) -> None:
    path = tmp_path / "slow.nmea"
    path.write_bytes(b"".join(t.epoch() for t in drive(T0, 120)))  # two minutes at 1 Hz
    fixes = Collector()
    source = GpsSource(GpsConfig(str(path), replay_pace="realtime"), fixes)
    source.start()
    first = fixes.take(1)[0]
    assert first.utc == T0
    source.stop(timeout=5)
    assert not source.running  # stop() interrupted the wait for the next recorded second
    assert source.counters["fixes"] < 120


def test_capture_files_are_the_documented_streams() -> None:
    assert (CAPTURES / "messy_ublox.nmea").read_bytes() == messy_stream().stream()
    assert (CAPTURES / "drive_10hz_multi_gnss.nmea").read_bytes() == clean_10hz_stream(100).stream()


def test_config_problems_are_all_reported() -> None:
    assert GpsConfig("/dev/ttyACM0").problems() == []
    bad = GpsConfig(" ", baudrate=0, replay_pace="slow", read_timeout=0, reopen_max=0.1)  # type: ignore[arg-type]
    assert bad.problems() == [
        Problem("$.gps.port", "must name a device, a pyserial URL or a file"),
        Problem("$.gps.baudrate", "must be positive, not 0"),
        Problem("$.gps.replay_pace", "must be 'realtime' or 'fast'"),
        Problem("$.gps.read_timeout", "must be a positive number of seconds"),
        Problem("$.gps.reopen_max", "must not be below reopen_min"),
    ]


@pytest.mark.parametrize("port", ["/dev/ttyACM0", "socket://127.0.0.1:1", "rfc2217://h:1"])
def test_only_existing_regular_files_are_replayed(port: str) -> None:
    assert not GpsConfig(port).is_file
    assert os.path.exists(CAPTURES / "messy_ublox.nmea")
    assert GpsConfig(str(CAPTURES / "messy_ublox.nmea")).is_file


@pytest.mark.parametrize("kind", ["GpsSource", "MemoryFixSource"])
def test_fix_source_contract_delivers_every_fix_in_order(kind: str, tmp_path: Path) -> None:
    """One body, every FixSource: started, it hands each fix to on_fix, in order, and counts."""
    truths = drive(T0, 4)
    path = tmp_path / "four.nmea"
    path.write_bytes(b"".join(t.epoch() for t in truths))
    fixes = Collector()
    source: FixSource
    if kind == "GpsSource":
        source = GpsSource(GpsConfig(str(path), replay_pace="fast"), fixes)
    else:
        source = MemoryFixSource(read_nmea_file(path), fixes)
    source.start()
    try:
        got = fixes.take(4)
    finally:
        source.stop()
    for fix, truth in zip(got, truths, strict=True):
        assert_fix_is(fix, truth)
    assert source.counters["fixes"] == 4
    assert fixes.empty()


def test_a_device_held_by_another_reader_is_retried_not_shared(
    make_pty: Callable[[], Pty], start_source: StartSource
) -> None:
    pty = make_pty()
    holder = os.open(pty.path, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what pyserial's exclusive lock does
    try:
        source, fixes = start_source(GpsConfig(pty.path, **FAST))
        wait_until(lambda: source.counters["port_open_failures"] >= 2, what="refused opens")
        assert source.counters["port_opens"] == 0
    finally:
        os.close(holder)  # the other reader goes away
    wait_until(lambda: source.counters["port_opens"] == 1, what="open after release")
    truth = drive(T0, 1)[0]
    pty.write(truth.epoch())
    assert_fix_is(fixes.take(1)[0], truth)


class _PacingRecorder(threading.Event):
    """The source's stop event, noting each pause the replay asks for and not sleeping it."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(-1.0 if timeout is None else timeout)
        return self.is_set()


def test_file_replay_speed_is_a_time_factor_like_cans(tmp_path: Path) -> None:
    path = tmp_path / "drive.nmea"
    path.write_bytes(b"".join(t.epoch() for t in drive(T0, 4)))  # 1 Hz: gaps of one second
    fixes = Collector()
    source = GpsSource(GpsConfig(str(path), replay_speed=5.0), fixes)
    assert source.config.speed == 5.0
    pacing = _PacingRecorder()
    source._stop = pacing
    source.start()
    fixes.take(4)
    source.stop()
    assert pacing.pauses[:3] == pytest.approx([0.2, 0.2, 0.2])  # 1 s of recording in 0.2 s
    # the older switch reads as the factor it means; the factor wins when both are set
    assert GpsConfig("f", replay_pace="fast").speed == 0.0
    assert GpsConfig("f", replay_pace="realtime").speed == 1.0
    assert GpsConfig("f", replay_pace="realtime", replay_speed=0.0).speed == 0.0
    assert GpsConfig("f", replay_speed=-1.0).problems() == [
        Problem("$.gps.replay_speed", "must be 0 (as fast as possible) or positive")
    ]
