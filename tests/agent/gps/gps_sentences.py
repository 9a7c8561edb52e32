"""Build valid NMEA sentences for tests from a known truth, independently of agent.gps.nmea."""

from __future__ import annotations

import functools
import operator
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

KNOT_KMH = 1.852


def sentence(body: str) -> bytes:
    """``$body*HH\\r\\n`` with the XOR checksum of the body."""
    checksum = functools.reduce(operator.xor, body.encode("ascii"), 0)
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


def _coordinate(value: float, width: int, letters: str) -> tuple[str, str]:
    hemisphere = letters[0] if value >= 0 else letters[1]
    value = abs(value)
    degrees = int(value)
    minutes = (value - degrees) * 60
    return f"{degrees:0{width}d}{minutes:08.5f}", hemisphere


@dataclass(frozen=True)
class Truth:
    """What a receiver knows in one epoch; ``latitude=None`` means no fix."""

    utc: datetime
    latitude: float | None = 48.1173
    longitude: float | None = 11.5166667
    speed_kmh: float = 41.5
    course: float = 84.4
    altitude: float = 545.4
    hdop: float = 0.9
    satellites: int = 9
    talker: str = "GN"
    # per-constellation GSA talkers and satellites in use; sum = satellites
    gsa: tuple[tuple[str, int], ...] = field(default=(("GN", 4), ("GN", 3), ("GN", 2)))

    @property
    def has_fix(self) -> bool:
        return self.latitude is not None

    def hhmmss(self) -> str:
        return self.utc.strftime("%H%M%S.") + f"{self.utc.microsecond // 10000:02d}"

    def rmc(self, talker: str | None = None) -> bytes:
        t = talker or self.talker
        day = self.utc.strftime("%d%m%y")
        if not self.has_fix:
            return sentence(f"{t}RMC,{self.hhmmss()},V,,,,,,,{day},,,N")
        lat, ns, lon, ew = self._position()
        knots = self.speed_kmh / KNOT_KMH
        return sentence(
            f"{t}RMC,{self.hhmmss()},A,{lat},{ns},{lon},{ew},{knots:.3f},{self.course:.2f},"
            f"{day},,,A"
        )

    def gga(self, talker: str | None = None) -> bytes:
        t = talker or self.talker
        if not self.has_fix:
            return sentence(f"{t}GGA,{self.hhmmss()},,,,,0,00,99.99,,,,,,")
        lat, ns, lon, ew = self._position()
        return sentence(
            f"{t}GGA,{self.hhmmss()},{lat},{ns},{lon},{ew},1,{self.satellites:02d},"
            f"{self.hdop:.2f},{self.altitude:.1f},M,47.0,M,,"
        )

    def vtg(self, talker: str | None = None) -> bytes:
        t = talker or self.talker
        if not self.has_fix:
            return sentence(f"{t}VTG,,T,,M,,N,,K,N")
        knots = self.speed_kmh / KNOT_KMH
        return sentence(f"{t}VTG,{self.course:.2f},T,,M,{knots:.3f},N,{self.speed_kmh:.3f},K,A")

    def gsas(self) -> list[bytes]:
        out = []
        for system, (talker, used) in enumerate(self.gsa, start=1):
            mode = 3 if self.has_fix else 1
            prns = [f"{10 * system + i:02d}" for i in range(used if self.has_fix else 0)]
            prns += [""] * (12 - len(prns))
            hdop = f"{self.hdop:.2f}" if self.has_fix else "99.99"
            out.append(sentence(f"{talker}GSA,A,{mode},{','.join(prns)},1.80,{hdop},1.50,{system}"))
        return out

    def gsv(self) -> bytes:
        return sentence("GPGSV,1,1,03,12,45,123,40,15,30,250,38,24,10,045,")

    def epoch(self) -> bytes:
        """A u-blox-like epoch: RMC VTG GGA GSA... GSV GLL."""
        parts = [self.rmc(), self.vtg(), self.gga(), *self.gsas(), self.gsv()]
        return b"".join(parts)

    def _position(self) -> tuple[str, str, str, str]:
        assert self.latitude is not None and self.longitude is not None
        lat, ns = _coordinate(self.latitude, 2, "NS")
        lon, ew = _coordinate(self.longitude, 3, "EW")
        return lat, ns, lon, ew


def drive(start: datetime, count: int, step: float = 1.0, **kwargs: object) -> list[Truth]:
    """``count`` epochs heading north-east from Munich, ``step`` seconds apart."""
    truths = []
    for i in range(count):
        kw = dict(kwargs)
        truths.append(
            Truth(
                utc=start + timedelta(seconds=i * step),
                latitude=48.1173 + i * 1e-4,
                longitude=11.5166667 + i * 2e-4,
                speed_kmh=30.0 + i,
                course=45.0 + i,
                **kw,  # type: ignore[arg-type]
            )
        )
    return truths


T0 = datetime(2026, 11, 23, 12, 35, 19, tzinfo=UTC)


def ubx_frame(cls: int, ident: int, payload: bytes) -> bytes:
    """A u-blox UBX frame with a correct Fletcher checksum."""
    body = bytes([cls, ident]) + len(payload).to_bytes(2, "little") + payload
    ck_a = ck_b = 0
    for byte in body:
        ck_a = (ck_a + byte) & 0xFF
        ck_b = (ck_b + ck_a) & 0xFF
    return b"\xb5\x62" + body + bytes([ck_a, ck_b])


def assert_fix_is(fix: object, truth: Truth, without: frozenset[str] = frozenset()) -> None:
    """The fix says what the truth says (within the text's precision); ``without``: None fields."""
    from agent.model import Fix, FixType

    assert isinstance(fix, Fix)
    assert fix.utc == truth.utc.replace(microsecond=(truth.utc.microsecond // 10000) * 10000)
    assert fix.talker == truth.talker
    if not truth.has_fix:
        assert (fix.latitude, fix.longitude, fix.fix_type, fix.quality) == (
            None,
            None,
            FixType.NONE,
            0,
        )
        assert fix.speed_kmh is None and fix.course is None and fix.altitude is None
        return
    assert truth.latitude is not None and truth.longitude is not None
    assert fix.latitude is not None and abs(fix.latitude - truth.latitude) < 1e-6
    assert fix.longitude is not None and abs(fix.longitude - truth.longitude) < 1e-6
    for name in without:
        assert getattr(fix, name) is None, name
    if "speed_kmh" not in without:
        assert fix.speed_kmh is not None and abs(fix.speed_kmh - truth.speed_kmh) < 0.01
    if "course" not in without:
        assert fix.course is not None and abs(fix.course - truth.course) < 0.01
    assert fix.altitude is not None and abs(fix.altitude - truth.altitude) <= 0.051
    assert fix.fix_type == FixType.FIX_3D
    assert fix.quality == 1
    assert fix.hdop is not None and abs(fix.hdop - truth.hdop) < 0.005
    assert fix.satellites == truth.satellites


class StreamBuilder:
    """Assembles a stream and the counters the parser must end with."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.counts: Counter[str] = Counter()
        self.expected: list[tuple[Truth, frozenset[str]]] = []

    def add(self, data: bytes, **counts: int) -> None:
        self.parts.append(data)
        self.counts.update(counts)

    def good(self, *sentences: bytes) -> None:
        for item in sentences:
            self.add(item, sentences=1, lines=1)

    def ignored(self, *sentences: bytes) -> None:
        for item in sentences:
            self.add(item, ignored=1, lines=1)

    def epoch(self, truth: Truth, without: frozenset[str] = frozenset()) -> None:
        self.good(truth.rmc(), truth.vtg(), truth.gga(), *truth.gsas())
        self.ignored(truth.gsv())
        self.expect(truth, without)

    def expect(self, truth: Truth, without: frozenset[str] = frozenset()) -> None:
        self.expected.append((truth, without))
        self.counts.update(fixes=1, fixes_no_position=0 if truth.has_fix else 1)

    def stream(self) -> bytes:
        return b"".join(self.parts)

    def counters(self) -> dict[str, int]:
        return {**self.counts, "bytes": len(self.stream())}


def messy_stream() -> StreamBuilder:
    """A receiver's bad day: power-up noise, UBX binary mixed in, no-fix epochs, several
    talkers, bad checksums, cut lines, proprietary and unknown sentences, an unfinished end."""
    b = StreamBuilder()
    t = [T0 + timedelta(seconds=i) for i in range(9)]
    b.add(b"\x00" * 16 + b"\xff\xfe\xfd", skipped_nul=16, skipped_binary=3)
    b.add(ubx_frame(0x05, 0x01, b"\x06\x01"), skipped_ubx=1)  # ACK-ACK
    b.ignored(sentence("GPTXT,01,01,02,u-blox ag - www.u-blox.com"))
    for i in (0, 1):  # cold start: time known, no position
        b.epoch(Truth(utc=t[i], latitude=None, longitude=None, talker="GP", gsa=(("GP", 0),)))
    b.epoch(Truth(utc=t[2], latitude=48.2, longitude=11.6))
    three = Truth(utc=t[3], latitude=48.2001, longitude=11.6002, speed_kmh=12.0)
    bad = bytearray(three.rmc())
    bad[-3] = ord("0") if bad[-3] != ord("0") else ord("1")
    b.add(bytes(bad), skipped_checksum=1, lines=1)
    b.good(three.vtg(), three.gga(), *three.gsas())
    b.expect(three)
    four = Truth(utc=t[4], latitude=48.2002, longitude=11.6004, talker="GN")
    b.good(four.rmc(), four.vtg())
    b.add(ubx_frame(0x01, 0x07, b"$GPRMC,\r\n" + bytes(84)), skipped_ubx=1)  # NAV-PVT-sized
    b.good(four.gga(), *four.gsas())
    b.expect(four)
    five = Truth(utc=t[5], latitude=48.2003, longitude=11.6006, talker="GL")
    b.add(five.rmc()[:25], skipped_truncated=1)  # cut by the next `$`
    b.good(five.gga())
    b.expect(five, frozenset({"speed_kmh", "course"}))
    b.add(sentence("PUBX,00,123524.00,4812.018,N,01136.036,E"), skipped_proprietary=1, lines=1)
    b.add(sentence("GPZZZ,1,2"), skipped_unknown=1, lines=1)
    six = Truth(utc=t[6], latitude=48.2004, longitude=11.6008, talker="GA", gsa=(("GA", 9),))
    cut = six.rmc()
    b.add(cut[:30] + b"\x00\x00" + cut[30:], skipped_truncated=1, skipped_nul=2)
    b.counts.update(skipped_text=len(cut) - 32)  # the rest of the cut line
    b.good(six.vtg(), six.gga(), *six.gsas())
    b.expect(six)
    b.add(b"$GPGGA," + b"9" * 200 + b"\r\n", skipped_overlong=1)
    b.add(sentence("GPGGA,123526.00,4812.0,N,01136.0,E,1,08,0.9,X,M,,M,,"), skipped_malformed=1)
    b.counts.update(lines=1)
    seven = Truth(utc=t[7], latitude=48.2005, longitude=11.6010, talker="BD", gsa=(("BD", 9),))
    b.epoch(seven)
    b.add(Truth(utc=t[8], talker="QZ").rmc()[:40], skipped_truncated=1)  # unfinished at the end
    return b


def clean_10hz_stream(epochs: int) -> StreamBuilder:
    """A 10 Hz multi-constellation drive (GPS, GLONASS, Galileo, BeiDou), u-blox style."""
    b = StreamBuilder()
    gsa = (("GN", 6), ("GN", 4), ("GN", 3), ("GN", 3))
    for truth in drive(T0, epochs, step=0.1, satellites=16, gsa=gsa):
        b.epoch(truth)
        b.ignored(
            sentence("GLGSV,1,1,04,65,40,100,35,66,20,200,30,72,60,300,41,88,10,050,"),
            sentence("GAGSV,1,1,03,02,50,120,39,11,30,210,36,30,15,330,33,,,,"),
            sentence("GBGSV,1,1,03,05,45,110,38,19,35,220,37,36,25,320,34,,,,"),
        )
    return b


def write_captures() -> None:
    """Rewrite tests/data/nmea captures: ``python -m tests.agent.gps.gps_sentences``."""
    from pathlib import Path

    captures = Path(__file__).resolve().parents[2] / "data" / "nmea"
    captures.mkdir(parents=True, exist_ok=True)
    (captures / "messy_ublox.nmea").write_bytes(messy_stream().stream())
    (captures / "drive_10hz_multi_gnss.nmea").write_bytes(clean_10hz_stream(100).stream())


if __name__ == "__main__":
    write_captures()
