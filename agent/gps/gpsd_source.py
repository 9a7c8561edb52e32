"""GPS fixes from a gpsd daemon (``[gps] port = "gpsd://127.0.0.1:2947"``), beside the serial port.

Many gateways already run gpsd, which owns the receiver; this source shares it instead of fighting
for the port. One reader thread connects over TCP, sends ``?WATCH``, and feeds every received
byte to :class:`agent.gps.gpsd.GpsdReader`; fixes leave only through ``on_fix`` (called in that
thread). A refused connection or a closed socket is handled like a lost serial port: logged,
counted (``port_open_failures``, ``port_losses``) and retried with the same capped, jittered
backoff until :meth:`GpsdSource.stop`.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable

from agent.gps.gpsd import GpsdAddress, GpsdReader, parse_gpsd_url, watch_command
from agent.gps.source import ReaderThread
from agent.model import Fix
from agent.source_settings import GpsConfig

log = logging.getLogger(__name__)

_READ_SIZE = 4096
_CONNECT_TIMEOUT = 5.0


class GpsdSource(ReaderThread):
    """Reads gpsd's JSON reports in a background thread and hands each Fix to ``on_fix``."""

    _kind = "gpsd reader"

    def __init__(
        self,
        config: GpsConfig,
        on_fix: Callable[[Fix], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, on_fix, clock)
        self.address: GpsdAddress = parse_gpsd_url(config.port)
        self._reader = GpsdReader()
        self._quiet_failures = False  # one warning per outage, not one per retry

    @property
    def counters(self) -> dict[str, int]:
        """Connection counters (port_*) and the reader's counters, as a snapshot."""
        return {**self._counters, **self._reader.counters}

    def _session(self) -> None:
        """Connect, ask for reports and read them until the socket fails or stop() is called."""
        where = (self.address.host, self.address.port)
        try:
            sock = socket.create_connection(where, timeout=_CONNECT_TIMEOUT)
        except OSError as exc:
            self._counters["port_open_failures"] += 1
            level = logging.DEBUG if self._quiet_failures else logging.WARNING
            self._quiet_failures = True
            log.log(level, "gpsd at %s cannot be reached: %s", self.config.port, exc)
            return
        self._quiet_failures = False
        self._counters["port_opens"] += 1
        log.info("gpsd at %s connected", self.config.port)
        try:
            sock.settimeout(self.config.read_timeout)
            sock.sendall(watch_command(self.address.device))
            self._read(sock)
        except OSError as exc:
            self._counters["port_losses"] += 1
            log.warning("gpsd at %s lost: %s; reconnecting with backoff", self.config.port, exc)
        except Exception:  # a bug must not end the reader: count it as a loss and reconnect
            self._counters["port_losses"] += 1
            log.exception("gpsd reader failed on %s; reconnecting", self.config.port)
        finally:
            sock.close()
            self._reader.reset()

    def _read(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = sock.recv(_READ_SIZE)
            except TimeoutError:
                continue
            if not data:
                raise ConnectionResetError("gpsd closed the connection")
            self._backoff.reset()  # only a daemon that delivers resets it: no flapping loop
            self._deliver(self._reader.feed(data, self._clock()))

    def _deliver(self, fixes: Iterable[Fix]) -> None:
        for fix in fixes:
            try:
                self._on_fix(fix)
            except Exception:
                self._counters["callback_errors"] += 1
                log.exception("GPS on_fix callback failed")
