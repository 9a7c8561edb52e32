"""Generate the golden drive: a CAN log of the demo vehicle and an NMEA file on one timeline.

Run once (``.venv/bin/python tests/data/drive/make_drive.py``); the outputs are committed:
``drive.log`` (candump), ``drive.nmea``. ``monitors.json`` and ``expected.jsonl`` sit next to
them; the test replays the drive and compares with ``expected.jsonl``.

Timeline (t in seconds from 2026-06-10 19:58:00 UTC = 21:58 in Paris):
- t 0-30 parked at the depot (a 300 m circle); driver door open t 5-12; engine on at t 20.
- t 30-130 drive east at 19 m/s to a site 1900 m away (a 250 m polygon around it, entered t 117).
  Leaving the depot: beyond 300 m + 20 m margin at t 47.
- t 120 is 22:00 in Paris: the evening window opens with the engine running.
- oil temperature 85 degC, rising 1 degC/s from t 60 to 125 at t 100, falling from t 190
  (above 120 from t 96; below 120 - 5 hysteresis at t 201): one event and one reminder (60 s).
- t 130-150 stopped at the site; t 150-250 drive back; inside 300 m - 20 m at t 236, and the
  10 s dwell ends at t 246.
- t 260 engine off; driver door opens at t 265; the recording ends at t 280.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cantools

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
START = datetime(2026, 6, 10, 19, 58, 0, tzinfo=UTC)
DURATION_S = 280
DEPOT = (48.8566, 2.3522)
SPEED_MS = 19.0
EARTH_RADIUS_M = 6_371_008.8


def east_m(t: float) -> float:
    """Distance east of the depot at time t."""
    if t < 30:
        return 0.0
    if t < 130:
        return SPEED_MS * (t - 30)
    if t < 150:
        return 1900.0
    if t < 250:
        return 1900.0 - SPEED_MS * (t - 150)
    return 0.0


def speed_ms(t: float) -> float:
    return SPEED_MS if 30 <= t < 130 or 150 <= t < 250 else 0.0


def oil_temp(t: float) -> float:
    if t < 60:
        return 85.0
    if t < 100:
        return 85.0 + (t - 60)
    if t < 190:
        return 125.0
    return max(95.0, 125.0 - (t - 190))


def position(t: float) -> tuple[float, float]:
    lat0, lon0 = DEPOT
    dlon = math.degrees(east_m(t) / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return lat0, lon0 + dlon


# -- CAN ------------------------------------------------------------------------------------------


def can_lines() -> list[str]:
    db = cantools.database.load_file(str(ROOT / "dbc" / "demo_vehicle.dbc"))
    engine = db.get_message_by_name("EngineData")
    doors = db.get_message_by_name("DoorStatus")
    lines = []
    for step in range(DURATION_S * 10 + 1):
        t = step / 10
        stamp = START.timestamp() + t
        running = 20 <= t < 260
        door_open = 5 <= t < 12 or t >= 265
        counter = step % 16
        engine_data = engine.encode(
            {
                "EngineSpeed": 1500.0 if running else 0.0,
                "OilTemp": round(oil_temp(t)),
                "CoolantTemp": 90,
                "PowertrainStatus": "RUNNING" if running else "NOT_RUNNING",
                "EngineRunning": "RUNNING" if running else "OFF",
                "ThrottlePosition": 20.0 if speed_ms(t) else 0.0,
                "EngineData_Counter": counter,
                "EngineData_Checksum": 0,
            }
        )
        door_data = doors.encode(
            {
                "DoorFrontLeft": "OPEN" if door_open else "CLOSED",
                "DoorFrontRight": "CLOSED",
                "DoorRearLeft": "CLOSED",
                "DoorRearRight": "CLOSED",
                "Trunk": "CLOSED",
                "Hood": "CLOSED",
                "AnyDoorOpen": "OPEN" if door_open else "CLOSED",
                "LockState": "UNLOCKED",
                "DoorStatus_Counter": counter,
                "DoorStatus_Checksum": 0,
            }
        )
        lines.append(f"({stamp:.6f}) can0 {engine.frame_id:03X}#{engine_data.hex().upper()}")
        lines.append(f"({stamp + 0.005:.6f}) can0 {doors.frame_id:03X}#{door_data.hex().upper()}")
    return lines


# -- NMEA -----------------------------------------------------------------------------------------


def checksum(body: str) -> str:
    value = 0
    for char in body:
        value ^= ord(char)
    return f"{value:02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}"


def dm(value: float, degree_digits: int) -> str:
    degrees = int(abs(value))
    minutes = (abs(value) - degrees) * 60
    return f"{degrees:0{degree_digits}d}{minutes:07.4f}"


def nmea_lines() -> list[str]:
    lines = []
    for t in range(DURATION_S + 1):
        moment = START + timedelta(seconds=t)
        hms = moment.strftime("%H%M%S") + ".00"
        lat, lon = position(t)
        lat_text, ns = dm(lat, 2), "N" if lat >= 0 else "S"
        lon_text, ew = dm(lon, 3), "E" if lon >= 0 else "W"
        knots = speed_ms(t) * 3.6 / 1.852
        course = 90.0 if t < 130 else 270.0
        date = moment.strftime("%d%m%y")
        lines.append(
            sentence(
                f"GPRMC,{hms},A,{lat_text},{ns},{lon_text},{ew},{knots:.2f},{course:.1f},{date},,,A"
            )
        )
        lines.append(
            sentence(f"GPGGA,{hms},{lat_text},{ns},{lon_text},{ew},1,09,0.9,35.0,M,47.0,M,,")
        )
        lines.append(sentence("GPGSA,A,3,02,05,07,09,13,16,20,26,29,,,,1.6,0.9,1.3"))
    return lines


def main() -> None:
    (HERE / "drive.log").write_text("\n".join(can_lines()) + "\n", encoding="ascii")
    (HERE / "drive.nmea").write_text("\r\n".join(nmea_lines()) + "\r\n", encoding="ascii")


if __name__ == "__main__":
    main()
