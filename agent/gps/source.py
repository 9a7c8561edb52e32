"""GPS receiver input: a serial port (device path or pyserial URL) or a recorded NMEA file;
a gpsd daemon is read by ``agent.gps.gpsd_source`` (:func:`make_fix_source` picks the one to use).

One reader thread per source does every blocking read; fixes leave it only through ``on_fix``
(called in that thread). pyserial stays inside this module and pynmea2 inside ``agent.gps.nmea``.

A device that disappears (USB receiver unplugged, socket closed) is a *loss*: logged, counted in
``port_losses``, and the port is reopened with capped, jittered exponential backoff until it comes
back or :meth:`GpsSource.stop` is called. The source never gives up on a device. A file is replayed
once, at the recording's pace or as fast as possible, then the thread ends.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Protocol, cast

import serial

from agent.backoff import Backoff, Retries
from agent.gps.nmea import NmeaParser, read_nmea_file
from agent.model import Fix
from agent.source_settings import GpsConfig

log = logging.getLogger(__name__)

SOURCE_COUNTERS = ("port_opens", "port_open_failures", "port_losses", "callback_errors")


class _Port(Protocol):
    """What the reader uses of a pyserial port (any URL handler)."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


class FixSource(Protocol):
    """A source of fixes: delivers each Fix to the ``on_fix`` it was built with."""

    @property
    def counters(self) -> dict[str, int]: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class MemoryFixSource:
    """In-memory twin of :class:`GpsSource` for unit tests: fixes given up front are delivered on
    ``start()``, later ones on ``push()``, in the caller's thread."""

    def __init__(self, fixes: Iterable[Fix], on_fix: Callable[[Fix], None]) -> None:
        self._queued = list(fixes)
        self._on_fix = on_fix
        self._started = False
        self._counters = {"fixes": 0}

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def start(self) -> None:
        self._started = True
        queued, self._queued = self._queued, []
        for fix in queued:
            self.push(fix)

    def push(self, fix: Fix) -> None:
        if not self._started:
            self._queued.append(fix)
            return
        self._counters["fixes"] += 1
        self._on_fix(fix)

    def stop(self, timeout: float = 5.0) -> None:
        self._started = False


class ReaderThread:
    """A fix source's reader thread: started once, stopped through the event it waits on, its
    sessions retried with the one backoff. ``GpsSource`` and ``GpsdSource`` differ only in the
    session they run."""

    _kind = "GPS reader"

    def __init__(
        self, config: GpsConfig, on_fix: Callable[[Fix], None], clock: Callable[[], float]
    ) -> None:
        self.config = config
        self._on_fix = on_fix
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counters = dict.fromkeys(SOURCE_COUNTERS, 0)
        self._backoff = Retries(Backoff(config.reopen_min, config.reopen_max), random.Random())

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        name = self._kind.lower().replace(" ", "-")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the reader to finish and wait for it (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.1f s", self._kind, timeout)

    def _run(self) -> None:
        self._retry_sessions()

    def _retry_sessions(self) -> None:
        while not self._stop.is_set():
            self._session()
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next_delay())
        log.info("%s for %s stopped", self._kind, self.config.port)

    def _session(self) -> None:
        raise NotImplementedError


class GpsSource(ReaderThread):
    """Reads one receiver in a background thread and hands each Fix to ``on_fix``."""

    def __init__(
        self,
        config: GpsConfig,
        on_fix: Callable[[Fix], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, on_fix, clock)
        self._parser = self._new_parser()
        self._quiet_open_failures = False  # log one open failure per outage, not every retry

    @property
    def counters(self) -> dict[str, int]:
        """Source counters (port_*) and the parser's counters, as a snapshot."""
        return {**self._counters, **self._parser.counters}

    def _new_parser(self) -> NmeaParser:
        timeout = None if self.config.is_file else self.config.epoch_timeout
        return NmeaParser(self.config.require_checksum, epoch_timeout=timeout)

    def _run(self) -> None:
        if self.config.is_file:
            self._replay(Path(self.config.port))
            return
        self._retry_sessions()

    def _session(self) -> None:
        """Open the port and read it until it fails or stop() is called."""
        try:
            # A device is locked (flock) so a second reader (gpsd, another agent) cannot steal
            # half the bytes; URL handlers have no lock.
            opened = serial.serial_for_url(
                self.config.port,
                baudrate=self.config.baudrate,
                timeout=self.config.read_timeout,
                exclusive=True if "://" not in self.config.port else None,
            )
            port = cast(_Port, opened)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._counters["port_open_failures"] += 1
            level = logging.DEBUG if self._quiet_open_failures else logging.WARNING
            self._quiet_open_failures = True
            log.log(level, "GPS port %s cannot be opened: %s", self.config.port, exc)
            return
        self._quiet_open_failures = False
        self._counters["port_opens"] += 1
        log.info("GPS port %s open at %d baud", self.config.port, self.config.baudrate)
        try:
            self._read(port)
        except (serial.SerialException, OSError) as exc:
            self._counters["port_losses"] += 1
            log.warning("GPS port %s lost: %s; reopening with backoff", self.config.port, exc)
        except Exception:  # a bug must not end the reader: count it as a loss and reopen
            self._counters["port_losses"] += 1
            log.exception("GPS reader failed on %s; reopening", self.config.port)
        finally:
            _close_quietly(port)
            self._deliver(self._parser.flush(self._clock()))

    def _read(self, port: _Port) -> None:
        while not self._stop.is_set():
            data = port.read(max(1, port.in_waiting))
            now = self._clock()
            if data:
                self._backoff.reset()  # only a port that delivers resets it: no flapping loop
                self._deliver(self._parser.feed(data, now))
            else:
                self._deliver(self._parser.poll(now))

    def _replay(self, path: Path) -> None:
        previous: float | None = None
        speed = self.config.speed  # 1.0 real time, 5.0 five times faster, 0 no pacing
        try:
            for fix in read_nmea_file(path, parser=self._parser):
                if speed > 0 and previous is not None:
                    if self._stop.wait(max(0.0, fix.timestamp - previous) / speed):
                        break
                elif self._stop.is_set():
                    break
                previous = fix.timestamp
                self._deliver([replace(fix, timestamp=self._clock())])
        except OSError as exc:
            self._counters["port_open_failures"] += 1
            log.error("GPS recording %s cannot be read: %s", path, exc)
            return
        log.info("GPS replay of %s finished", path)

    def _deliver(self, fixes: Iterable[Fix]) -> None:
        for fix in fixes:
            try:
                self._on_fix(fix)
            except Exception:
                self._counters["callback_errors"] += 1
                log.exception("GPS on_fix callback failed")


def make_fix_source(
    config: GpsConfig, on_fix: Callable[[Fix], None], *, clock: Callable[[], float] = time.time
) -> FixSource:
    """The source the configuration names: gpsd for ``gpsd://``, else the serial/file reader."""
    if config.is_gpsd:
        from agent.gps.gpsd_source import GpsdSource  # noqa: PLC0415 (it imports GpsConfig from here)

        return GpsdSource(config, on_fix, clock=clock)
    return GpsSource(config, on_fix, clock=clock)


def _close_quietly(port: _Port) -> None:
    try:
        port.close()
    except (serial.SerialException, OSError) as exc:
        log.debug("closing GPS port: %s", exc)
