"""Build valid NMEA sentences for tests from a known truth, independently of agent.nmea."""

from __future__ import annotations

import functools
import operator
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


def assert_fix_is(fix: object, truth: Truth) -> None:
    """The fix says what the truth says (within the precision of the rendered text)."""
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
    assert fix.speed_kmh is not None and abs(fix.speed_kmh - truth.speed_kmh) < 0.01
    assert fix.course is not None and abs(fix.course - truth.course) < 0.01
    assert fix.altitude is not None and abs(fix.altitude - truth.altitude) <= 0.051
    assert fix.fix_type == FixType.FIX_3D
    assert fix.quality == 1
    assert fix.hdop is not None and abs(fix.hdop - truth.hdop) < 0.005
    assert fix.satellites == truth.satellites
