"""Where the simulator's output goes: the I/O edge of ``edgemon-agent simulate``.

CAN: any python-can interface (:class:`BusSink`), a log file in any python-can format chosen by
suffix (:class:`LogSink`, candump ``.log`` by default), or a **socketcand** server
(:class:`SocketcandServer`, the linux-can TCP protocol in raw mode: python-can's ``socketcand``
interface reads it from another process, with the sender's timestamps).
NMEA: a file or a serial device/pyserial URL (:class:`SerialLineSink`, :class:`FileLineSink`),
a pseudo-terminal (:class:`PtyLineSink`, its slave path linked where asked), or a TCP server
(:class:`TcpLineServer`; the agent reads it with ``port = "socket://host:port"``).

A sink never blocks the drive for long: a slow TCP client is dropped, a full pty drops lines;
``counters`` say how many.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import os
import select
import socket
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Any, Protocol

import can
import serial

from agent.can.source import message_from_frame
from agent.errors import SourceError
from agent.model import Frame

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    counters: dict[str, int]

    def send(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


class LineSink(Protocol):
    counters: dict[str, int]

    def send(self, line: str) -> None: ...

    def close(self) -> None: ...


class BusSink:
    """Frames onto a python-can bus (``socketcan``/``vcan0``, ``virtual``...)."""

    def __init__(self, interface: str, channel: str, **options: Any) -> None:
        self.counters = {"frames": 0, "send_errors": 0}
        try:
            self._bus = can.Bus(interface=interface, channel=channel, **options)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise SourceError(f"CAN {interface}:{channel} cannot open: {exc}") from exc

    def send(self, frame: Frame) -> None:
        try:
            self._bus.send(message_from_frame(frame), timeout=0.2)
        except (can.CanError, OSError, ValueError) as exc:
            self.counters["send_errors"] += 1
            log.debug("CAN send failed: %s", exc)
            return
        self.counters["frames"] += 1

    def close(self) -> None:
        self._bus.shutdown()


class LogSink:
    """Frames into a log file; the format follows the suffix (``.log`` = candump -L)."""

    def __init__(self, path: Path) -> None:
        self.counters = {"frames": 0}
        try:
            self._writer = can.Logger(str(path))
        except (OSError, ValueError) as exc:
            raise SourceError(f"{path}: cannot write a CAN log: {exc}") from exc

    def send(self, frame: Frame) -> None:
        msg = message_from_frame(frame)
        msg.channel = frame.bus
        self._writer.on_message_received(msg)
        self.counters["frames"] += 1

    def close(self) -> None:
        self._writer.stop()


class _Client:
    def __init__(self, sock: socket.socket, ready: bool) -> None:
        self.sock = sock
        self.ready_at = time.monotonic() if ready else None


class _TcpServer:
    """Broadcasts text to every connected client; ``_handshake`` runs per client first."""

    def __init__(self, host: str, port: int) -> None:
        self.counters = {"clients": 0, "dropped_clients": 0}
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, port), reuse_port=False)
        self.address = self._listener.getsockname()[:2]
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="sim-tcp", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(2.0)
            client = _Client(sock, ready=False)
            threading.Thread(target=self._greet, args=(client,), daemon=True).start()

    def _greet(self, client: _Client) -> None:
        try:
            self._handshake(client.sock)
        except OSError as exc:
            log.info("simulator client left during the handshake: %s", exc)
            client.sock.close()
            return
        client.ready_at = time.monotonic() + 0.2  # let the client read the last reply alone
        with self._lock:
            self._clients.append(client)
            self.counters["clients"] += 1

    def _handshake(self, sock: socket.socket) -> None:
        """Nothing by default: text flows as soon as the client connects."""

    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def broadcast(self, text: str) -> None:
        data = text.encode("ascii")
        now = time.monotonic()
        with self._lock:
            for client in list(self._clients):
                if client.ready_at is None or client.ready_at > now:
                    continue
                try:
                    client.sock.sendall(data)
                except OSError as exc:
                    log.info("simulator client dropped: %s", exc)
                    self._clients.remove(client)
                    self.counters["dropped_clients"] += 1
                    client.sock.close()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for client in self._clients:
                client.sock.close()
            self._clients.clear()


class SocketcandServer(_TcpServer):
    """A socketcand server in raw mode: ``< frame ID SECONDS.MICROS DATA >`` per frame."""

    def __init__(self, host: str, port: int, channel: str = "vcan0") -> None:
        super().__init__(host, port)
        self.channel = channel
        self.counters["frames"] = 0

    def _handshake(self, sock: socket.socket) -> None:
        sock.sendall(b"< hi >")
        buffer = b""
        while True:
            while b">" not in buffer:
                chunk = sock.recv(256)
                if not chunk:
                    raise OSError("closed before rawmode")
                buffer += chunk
            command, _, buffer = buffer.partition(b">")
            if command.strip().startswith((b"< open", b"< rawmode")):
                time.sleep(0.05)  # the client reads each reply with its own recv()
                sock.sendall(b"< ok >")
            if command.strip().startswith(b"< rawmode"):
                return

    def send(self, frame: Frame) -> None:
        ident = (
            f"{frame.arbitration_id:08X}" if frame.is_extended else f"{frame.arbitration_id:03X}"
        )
        self.broadcast(f"< frame {ident} {frame.timestamp:.6f} {frame.data.hex().upper()} >")
        self.counters["frames"] += 1


class TcpLineServer(_TcpServer):
    """NMEA lines to every TCP client (``socket://host:port`` for pyserial readers)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.counters["lines"] = 0

    def send(self, line: str) -> None:
        self.broadcast(line + "\r\n")
        self.counters["lines"] += 1


class FileLineSink:
    def __init__(self, path: Path) -> None:
        self.counters = {"lines": 0}
        self._file = Path(path).open("w", encoding="ascii", newline="")  # noqa: SIM115

    def send(self, line: str) -> None:
        self._file.write(line + "\r\n")
        self._file.flush()
        self.counters["lines"] += 1

    def close(self) -> None:
        self._file.close()


class SerialLineSink:
    """A serial device or any pyserial URL (``socket://``, ``rfc2217://``, ``loop://``)."""

    def __init__(self, url: str, baudrate: int = 9600) -> None:
        self.counters = {"lines": 0, "write_errors": 0}
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, write_timeout=1.0)
        except (serial.SerialException, ValueError) as exc:
            raise SourceError(f"NMEA output {url} cannot open: {exc}") from exc

    def send(self, line: str) -> None:
        try:
            self._port.write((line + "\r\n").encode("ascii"))
        except (serial.SerialException, OSError) as exc:
            self.counters["write_errors"] += 1
            log.debug("NMEA write failed: %s", exc)
            return
        self.counters["lines"] += 1

    def close(self) -> None:
        self._port.close()


class PtyLineSink:
    """A pseudo-terminal like a USB GPS: readers open ``link`` (a symlink to the slave)."""

    def __init__(self, link: Path) -> None:
        self.counters = {"lines": 0, "dropped_lines": 0}
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes as a UART gives them
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.link = Path(link)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.link.symlink_to(self.path)

    def send(self, line: str) -> None:
        data = (line + "\r\n").encode("ascii")
        try:
            _, writable, _ = select.select([], [self._master], [], 0)
            written = os.write(self._master, data) if writable else 0
        except (BlockingIOError, OSError):
            written = 0
        if written < len(data):
            self.counters["dropped_lines"] += 1
            return
        self.counters["lines"] += 1

    def pending(self) -> int:
        """Bytes written and not yet read by the other side."""
        count = array.array("i", [0])
        fcntl.ioctl(self._slave, termios.FIONREAD, count)
        return count[0]

    def close(self, linger: float = 1.0) -> None:
        """Remove the link, give a reader ``linger`` seconds to drain, then hang up."""
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        deadline = time.monotonic() + linger
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.close(self._master)
        os.close(self._slave)
