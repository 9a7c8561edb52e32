"""CAN frame sources: a live python-can bus, and recorded logs. ``can.Message`` stops here.

A :class:`CanSource` owns one python-can bus built from a :class:`BusConfig` (several buses at
once: one source each). It installs kernel acceptance filters (python-can ``can_filters``; on
SocketCAN the kernel drops the other ids) and converts every message to :class:`agent.model.Frame`
at once, keeping ``msg.timestamp``: the kernel receive time on SocketCAN, the send time on the
in-process ``virtual`` bus. When the interface fails (``ip link set can0 down``, USB adapter
unplugged), the bus is closed and reopened with a growing delay; ``counters["reopens"]`` counts it.

:func:`read_log` replays candump ``.log``, Vector ``.asc`` and ``.blf``, PEAK ``.trc`` and
python-can ``.csv`` files with the recording's own timestamps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import can

from agent.backoff import Backoff, Retries
from agent.errors import SourceError
from agent.model import Frame
from agent.source_settings import BusConfig

log = logging.getLogger(__name__)

LOG_SUFFIXES = (".log", ".asc", ".blf", ".trc", ".csv")

CanFilters = Sequence[Mapping[str, int | bool]]

# python-can reads an empty filter list as "accept everything". When no id is in use we want
# the opposite, so we install one filter on the highest extended id instead.
_NOTHING_WANTED: list[dict[str, int | bool]] = [
    {"can_id": 0x1FFF_FFFF, "can_mask": 0x1FFF_FFFF, "extended": True}
]


def frame_from_message(msg: can.Message, bus: str) -> Frame:
    """Our frame from python-can's message; the timestamp is kept as received."""
    data = bytes(msg.data)
    return Frame(
        timestamp=msg.timestamp,
        arbitration_id=msg.arbitration_id,
        data=data,
        is_extended=msg.is_extended_id,
        is_fd=msg.is_fd or len(data) > 8,  # the CSV format does not record the FD flag
        bus=bus,
    )


def message_from_frame(frame: Frame) -> can.Message:
    """python-can's message for a frame (for senders: simulators, tests)."""
    return can.Message(
        timestamp=frame.timestamp,
        arbitration_id=frame.arbitration_id,
        data=frame.data,
        is_extended_id=frame.is_extended,
        is_fd=frame.is_fd,
        bitrate_switch=frame.is_fd,
    )


class CanSource:
    """One live bus: ``recv(timeout) -> Frame | None``; reopens itself after interface errors.

    ``open()`` opens at once and raises SourceError when it cannot; without it, the first
    ``recv`` opens the bus, and keeps retrying with a growing delay while it cannot (an
    interface that is not up yet at boot). ``close()`` ends it for good.
    """

    def __init__(
        self,
        config: BusConfig,
        can_filters: CanFilters | None = None,
        *,
        reopen_delay: float = 0.5,
        max_reopen_delay: float = 30.0,
    ) -> None:
        self.config = config
        self.counters: dict[str, int] = dict.fromkeys(
            ("frames", "error_frames", "remote_frames", "receive_errors", "open_failures"), 0
        )
        self.counters["reopens"] = 0
        self._filters = _kernel_filters(can_filters)
        self._bus: can.BusABC | None = None
        self._opened_once = False
        self._closed = False  # closed on purpose: no more reopening
        # no jitter: one local bus, nothing to spread
        self._retries = Retries(Backoff(reopen_delay, max_reopen_delay))
        self._next_attempt = 0.0

    @property
    def is_open(self) -> bool:
        return self._bus is not None

    def open(self) -> None:
        """Open the bus now; raise SourceError with python-can's reason when it cannot."""
        if self._bus is not None:
            return
        self._closed = False
        config = self.config
        kwargs: dict[str, Any] = dict(config.options)
        kwargs.update(interface=config.interface, channel=config.channel)
        if config.bitrate is not None:
            kwargs["bitrate"] = config.bitrate
        if config.fd:
            kwargs["fd"] = True
            if config.data_bitrate is not None:
                kwargs["data_bitrate"] = config.data_bitrate
        if config.receive_own_messages:
            kwargs["receive_own_messages"] = True
        kwargs["can_filters"] = self._filters
        try:
            self._bus = can.Bus(**kwargs)
        except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as exc:
            where = f"{config.interface}:{config.channel}"
            raise SourceError(f"CAN bus {config.name} ({where}) cannot open: {exc}") from exc
        if self._opened_once:
            self.counters["reopens"] += 1
            log.info("CAN bus %s reopened", config.name)
        self._opened_once = True

    def set_filters(self, can_filters: CanFilters | None) -> None:
        """Replace the acceptance filters (e.g. when the monitors in use change)."""
        self._filters = _kernel_filters(can_filters)
        if self._bus is not None:
            self._bus.set_filters(self._filters)

    def recv(self, timeout: float | None = None) -> Frame | None:
        """The next data frame, or None on timeout, error/remote frames and while reopening."""
        bus = self._bus if self._bus is not None else self._try_reopen(timeout)
        if bus is None:
            return None
        try:
            msg = bus.recv(timeout)
        except (can.CanError, OSError, ValueError) as exc:
            self._on_failure(exc)
            return None
        if msg is None:
            return None
        # Only a received message proves the link works again: a down interface binds fine and
        # times out quietly, so resetting the backoff on a timeout would make it spin.
        self._retries.reset()
        if msg.is_error_frame:
            self.counters["error_frames"] += 1
            return None
        if msg.is_remote_frame:
            self.counters["remote_frames"] += 1
            return None
        self.counters["frames"] += 1
        return frame_from_message(msg, self.config.name)

    def __iter__(self) -> Iterator[Frame]:
        """Frames until closed (blocking; for scripts and tests)."""
        while not self._closed:
            frame = self.recv(0.5)
            if frame is not None:
                yield frame

    def close(self) -> None:
        bus, self._bus = self._bus, None
        self._closed = True
        if bus is not None:
            try:
                bus.shutdown()
            except (can.CanError, OSError) as exc:
                log.debug("closing CAN bus %s: %s", self.config.name, exc)

    def __enter__(self) -> CanSource:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _on_failure(self, exc: BaseException) -> None:
        self.counters["receive_errors"] += 1
        log.warning(
            "CAN bus %s failed, reopening in %.1f s: %s",
            self.config.name,
            self._retries.peek(),
            exc,
        )
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.shutdown()
            except (can.CanError, OSError) as close_exc:
                log.debug("closing failed CAN bus %s: %s", self.config.name, close_exc)
        # Back off even when reopening succeeds: a link that is down opens fine and fails at
        # the first read, and retrying at once would spin.
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._next_attempt = time.monotonic() + self._retries.next_delay()

    def _try_reopen(self, timeout: float | None) -> can.BusABC | None:
        if self._closed:
            return None
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            time.sleep(wait if timeout is None else min(wait, timeout))
            return None
        try:
            self.open()
        except SourceError as exc:
            self.counters["open_failures"] += 1
            log.warning("%s; retrying in %.1f s", exc, self._retries.peek())
            self._schedule_retry()
            return None
        return self._bus


def _kernel_filters(can_filters: CanFilters | None) -> list[Any] | None:
    if can_filters is None:
        return None
    if not can_filters:
        return list(_NOTHING_WANTED)
    return [dict(f) for f in can_filters]


def read_log(
    path: Path,
    bus: str = "can0",
    counters: dict[str, int] | None = None,
    can_filters: CanFilters | None = None,
) -> Iterator[Frame]:
    """Frames of a recorded log with their recorded timestamps.

    Error and remote frames are skipped and counted in ``counters`` (when given), so are
    malformed candump lines (``skipped_bad_line``); other formats are read by python-can, and a
    file it cannot read raises SourceError naming the file. ``can_filters`` (python-can format,
    e.g. ``Decoder.can_filters(bus)``) play the kernel's part for a replay: frames they reject
    are dropped here and counted as ``filtered`` ([] drops every frame, None none).
    """
    suffix = path.suffix.lower()
    if suffix not in LOG_SUFFIXES:
        raise SourceError(f"{path}: unsupported CAN log format (use {', '.join(LOG_SUFFIXES)})")
    if not path.is_file():
        raise SourceError(f"{path}: CAN log not found")
    tally = counters if counters is not None else {}
    for key in ("frames", "error_frames", "remote_frames", "skipped_bad_line", "filtered"):
        tally.setdefault(key, 0)
    if suffix == ".log":
        frames = _replay_candump(path, bus, tally)
    else:
        frames = _replay(path, suffix, bus, tally)
    if can_filters is None:
        return frames
    return _accepted(frames, can_filters, tally)


def _accepted(
    frames: Iterator[Frame], can_filters: CanFilters, tally: dict[str, int]
) -> Iterator[Frame]:
    """The frames python-can's filter rule accepts (``id & mask == can_id & mask``)."""
    rules = [(int(f["can_id"]), int(f["can_mask"]), f.get("extended")) for f in can_filters]
    for frame in frames:
        for can_id, mask, extended in rules:
            if (can_id ^ frame.arbitration_id) & mask == 0 and extended in (
                None,
                frame.is_extended,
            ):
                yield frame
                break
        else:
            tally["filtered"] += 1


def _replay(path: Path, suffix: str, bus: str, tally: dict[str, int]) -> Iterator[Frame]:
    # ASC files store times relative to the "Begin Triggerblock" date; ask for absolute ones.
    kwargs: dict[str, Any] = {"relative_timestamp": False} if suffix == ".asc" else {}
    read = 0
    try:
        with can.LogReader(path, **kwargs) as reader:
            for msg in reader:
                read += 1
                if msg.is_error_frame:
                    tally["error_frames"] += 1
                elif msg.is_remote_frame:
                    tally["remote_frames"] += 1
                else:
                    tally["frames"] += 1
                    yield frame_from_message(msg, bus)
    except Exception as exc:  # readers raise struct.error, ValueError, OSError, KeyError...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SourceError(f"{path}: unreadable after {read} messages: {reason}") from exc


_CAN_ERR_FLAG = 0x2000_0000


def _replay_candump(path: Path, bus: str, tally: dict[str, int]) -> Iterator[Frame]:
    """candump -l lines: ``(1436509052.249713) can0 1A0#0011`` (``##`` + flags for CAN FD)."""
    try:
        with path.open(encoding="ascii", errors="replace") as lines:
            for number, line in enumerate(lines, start=1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                kind = _candump_line(text, bus)
                if isinstance(kind, Frame):
                    tally["frames"] += 1
                    yield kind
                elif kind in tally:
                    tally[kind] += 1
                else:
                    tally["skipped_bad_line"] += 1
                    log.debug("%s:%d: skipped: %s", path, number, kind)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _candump_line(text: str, bus: str) -> Frame | str:
    """A frame, or the name of a counter ("error_frames", "remote_frames") or a reason."""
    fields = text.split()
    if len(fields) < 3 or not (fields[0].startswith("(") and fields[0].endswith(")")):
        return "not a candump line"
    try:
        timestamp = float(fields[0][1:-1])
        ident, sep, payload = fields[2].partition("#")
        frame_id = int(ident, 16)
        if not sep or len(ident) not in (3, 8):
            return "no id#data"
        if frame_id & _CAN_ERR_FLAG and len(ident) == 8:
            return "error_frames"
        if payload.startswith("R"):
            return "remote_frames"
        is_fd = payload.startswith("#")
        hex_data = (payload[2:] if is_fd else payload).replace(".", "")
        data = bytes.fromhex(hex_data)
    except ValueError as exc:
        return str(exc)
    if len(data) > (64 if is_fd else 8):
        return "payload too long"
    return Frame(timestamp, frame_id, data, len(ident) == 8, is_fd, bus)
