"""Cut a raw serial byte stream into NMEA sentence candidates, skipping and counting the junk.

Pure: bytes in, ``$...`` sentence bodies out (printable ASCII, line end removed). Reads may split
anywhere; an unfinished sentence waits for the next chunk. Rules:

- A sentence starts at ``$`` and ends at CR or LF. Another ``$`` before the line end means the
  line was cut (``skipped_truncated``) and a new sentence starts there: a bad line never costs the
  good line after it. Any other non-printable byte also cuts the line and is then treated as junk.
- Between sentences: NUL bytes are counted in ``skipped_nul``; u-blox UBX frames (``B5 62 class id
  len16 payload ckA ckB``, Fletcher checksum verified) are skipped whole (``skipped_ubx``), so a
  ``$`` inside their payload never starts a fake sentence; other printable bytes (stray text,
  the rest of a cut line) are counted in ``skipped_text``, every other byte except CR/LF in
  ``skipped_binary``.
- A sentence longer than ``max_length`` characters is dropped (``skipped_overlong``) up to its
  line end.
"""

from __future__ import annotations

import re

_DOLLAR = 0x24
_CR = 0x0D
_LF = 0x0A
_UBX_HEADER = 6  # sync (2) + class + id + length (2)
MAX_UBX_PAYLOAD = 4096  # larger declared lengths are noise, not a frame worth waiting for

# The next thing worth looking at between sentences: a sentence start or a UBX sync pair.
_START = re.compile(rb"\$|\xb5\x62")
# The first byte that ends a sentence body: a line end, any non-printable byte, or a new `$`.
_BODY_END = re.compile(rb"[^\x20-\x23\x25-\x7e]")
_PRINTABLE = re.compile(rb"[\x20-\x7e]")
_LINE_ENDS = frozenset((b"\r\n", b"\n", b"\r"))

FRAMING_COUNTERS = (
    "bytes",
    "skipped_nul",
    "skipped_binary",
    "skipped_text",
    "skipped_ubx",
    "skipped_truncated",
    "skipped_overlong",
)


def _ubx_checksum_ok(frame: bytes | bytearray) -> bool:
    ck_a = ck_b = 0
    for byte in frame[2:-2]:
        ck_a = (ck_a + byte) & 0xFF
        ck_b = (ck_b + ck_a) & 0xFF
    return frame[-2] == ck_a and frame[-1] == ck_b


class SentenceFramer:
    """Incremental splitter; ``counters`` is shared with the owning parser."""

    def __init__(self, counters: dict[str, int], max_length: int = 160) -> None:
        self.counters = counters
        for name in FRAMING_COUNTERS:
            counters.setdefault(name, 0)
        self.max_length = max_length
        self._pending = b""
        self._discarding = False  # inside an overlong line: drop up to its end

    def push(self, data: bytes) -> list[bytes]:
        """Add bytes; return every sentence completed by them (``$`` included, no line end)."""
        self.counters["bytes"] += len(data)
        buf = self._pending + data if self._pending else bytes(data)
        pos = self._skip_overlong(buf) if self._discarding else 0
        lines: list[bytes] = []
        end = len(buf)
        while pos < end:
            found = _START.search(buf, pos)
            start = found.start() if found else end
            if found is None and buf.endswith(b"\xb5"):
                start -= 1  # maybe the first half of a UBX sync pair: keep it for the next read
            if start > pos:
                self._junk(buf[pos:start])
            if found is None:
                pos = start
            elif buf[start] == _DOLLAR:
                pos = self._sentence(buf, start, lines)
            else:
                pos = self._ubx(buf, start)
            if pos == start:
                break  # unfinished sentence or frame: wait for more bytes
        self._pending = buf[pos:]
        return lines

    def finish(self) -> None:
        """End of stream: whatever is left is an unfinished sentence or a broken frame."""
        rest, self._pending = self._pending, b""
        if self._discarding:
            self._discarding = False
        elif rest.startswith(b"$"):
            self.counters["skipped_truncated"] += 1
        elif rest:
            self._junk(rest)

    def _sentence(self, buf: bytes, start: int, lines: list[bytes]) -> int:
        """Handle the sentence starting at ``start``; return where scanning resumes."""
        found = _BODY_END.search(buf, start + 1)
        if found is None:
            if len(buf) - start > self.max_length:
                self.counters["skipped_overlong"] += 1
                self._discarding = True
                return len(buf)
            return start
        stop = found.start()
        if stop - start > self.max_length:
            self.counters["skipped_overlong"] += 1
        elif buf[stop] in (_CR, _LF):
            lines.append(buf[start:stop])
        else:
            self.counters["skipped_truncated"] += 1
        return stop

    def _skip_overlong(self, buf: bytes) -> int:
        found = _BODY_END.search(buf)
        if found is None:
            return len(buf)
        self._discarding = False
        return found.start()

    def _ubx(self, buf: bytes, start: int) -> int:
        """Skip a whole UBX frame at ``start``; return ``start`` to wait for the rest of it."""
        available = len(buf) - start
        if available < _UBX_HEADER:
            return start
        length = buf[start + 4] | buf[start + 5] << 8
        if length > MAX_UBX_PAYLOAD:
            self.counters["skipped_binary"] += 2
            return start + 2
        total = _UBX_HEADER + length + 2
        if available < total:
            return start
        if _ubx_checksum_ok(buf[start : start + total]):
            self.counters["skipped_ubx"] += 1
            return start + total
        self.counters["skipped_binary"] += 2  # not a frame after all: rescan after the sync
        return start + 2

    def _junk(self, chunk: bytes) -> None:
        if chunk in _LINE_ENDS:
            return  # the usual case between two sentences
        nul = chunk.count(0)
        line_ends = chunk.count(_CR) + chunk.count(_LF)
        text = len(_PRINTABLE.findall(chunk))
        self.counters["skipped_nul"] += nul
        self.counters["skipped_text"] += text
        self.counters["skipped_binary"] += len(chunk) - nul - line_ends - text
