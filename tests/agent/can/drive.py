"""A short scripted drive of the demo vehicle as frames: every message at its cycle time,
rolling counters ticking, a door opened at standstill, the engine started, speed rising."""

from __future__ import annotations

import heapq
from typing import Any

from cantools.database.can import Database, Message

from agent.model import Frame

T0 = 1_763_900_000.0  # recording start (epoch seconds)


def _values(name: str, t: float, n: int) -> dict[str, Any]:
    moving = t >= 2.0
    speed = min(50.0, (t - 2.0) * 12.5) if moving else 0.0
    tick = {"counter": n % 16, "checksum": (n * 29) % 256}
    if name == "VehicleMotion":
        return {"Speed": round(speed, 2), "Moving": int(speed > 0), "LongAccel": 0.0,
                "VehicleMotion_Counter": tick["counter"],
                "VehicleMotion_Checksum": tick["checksum"]}  # fmt: skip
    if name == "IgnitionStatus":
        return {"IgnitionState": "ON", "IgnitionOn": "ON", "AliveCounter": tick["counter"],
                "CRC": tick["checksum"]}  # fmt: skip
    if name == "EngineData":
        status = "RUNNING" if t >= 1.0 else "STARTING" if t >= 0.5 else "NOT_RUNNING"
        return {"EngineSpeed": 800 if t >= 1.0 else 0, "OilTemp": 60 + int(t * 4),
                "CoolantTemp": 70, "PowertrainStatus": status,
                "EngineRunning": int(t >= 1.0), "ThrottlePosition": 10 if moving else 0,
                "EngineData_Counter": tick["counter"],
                "EngineData_Checksum": tick["checksum"]}  # fmt: skip
    if name == "DoorStatus":
        open_ = 0.3 <= t < 1.2
        return {"DoorFrontLeft": int(open_), "DoorFrontRight": 0, "DoorRearLeft": 0,
                "DoorRearRight": 0, "Trunk": 0, "Hood": 0, "AnyDoorOpen": int(open_),
                "LockState": "UNLOCKED", "DoorStatus_Counter": tick["counter"],
                "DoorStatus_Checksum": tick["checksum"]}  # fmt: skip
    if name == "DriveMode":
        return {"DrivingMode": "ECO", "GearPosition": "DRIVE" if moving else "PARK",
                "DriveMode_Counter": tick["counter"]}  # fmt: skip
    if name == "FuelStatus":
        return {"FuelLevel": 42.5, "FuelAutonomy": 410, "TotalAutonomy": 455,
                "FuelConsumption": 5.5}  # fmt: skip
    if name == "BodyInfo":
        page = n % 3
        base = {"BodyInfo_Page": page, "BodyInfo_Counter": tick["counter"],
                "BodyInfo_Checksum": tick["checksum"]}  # fmt: skip
        pages = [
            {"OutsideAirTemp": 12.5, "CabinTemp": 19.0, "AirConditioning": "DISABLED"},
            {"AlarmActivation": "INACTIVE", "AlarmTriggerType": "NO_BREAK_IN"},
            {"BeltWarning": "OMISSION" if moving else "NORMAL", "BeltDriverFastened": 0,
             "BeltPassengerFastened": 0},
        ]  # fmt: skip
        return base | pages[page]
    if name == "Odometer":
        return {"OdometerKm": 12345.6, "TripDistance": 0.0, "TripDuration": int(t)}
    if name == "ChargerStatus":
        return {"ChargingStatus": "DISCONNECTED", "ChargePlugged": "UNPLUGGED",
                "ChargingPower": 0, "ChargeTimeRemaining": 0,
                "ChargerStatus_Counter": tick["counter"],
                "ChargerStatus_Checksum": tick["checksum"]}  # fmt: skip
    cells = {f"CellVoltage{i:02d}": 3.7 for i in range(1, 25)}
    return cells | {"StateOfCharge": 80.0, "ElectricAutonomy": 45, "PackVoltage": 355.2,
                    "PackCurrent": -12.5 if moving else 0.0, "PackTempMax": 28,
                    "PackTempMin": 24, "BatteryStatusFD_Counter": n % 256,
                    "BatteryStatusFD_CRC": (n * 7919) % 65536}  # fmt: skip


def demo_drive(db: Database, seconds: float = 3.0, t0: float = T0) -> list[Frame]:
    """The frames of the drive, in time order."""
    queue: list[tuple[float, int, int, Message]] = []
    for index, message in enumerate(db.messages):
        heapq.heappush(queue, (index * 0.001, index, 0, message))
    frames: list[Frame] = []
    while queue:
        t, index, n, message = heapq.heappop(queue)
        if t >= seconds:
            continue
        data = bytes(message.encode(_values(message.name, t, n)))
        frames.append(Frame(round(t0 + t, 6), message.frame_id, data,
                            message.is_extended_frame, message.is_fd))  # fmt: skip
        heapq.heappush(queue, (t + message.cycle_time / 1000.0, index, n + 1, message))
    return frames
