"""agent.pipeline: the one step of the daemon, ``replay`` and the benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.can.dbc import demo_buses, load_vehicle
from agent.can.decode import Decoder
from agent.model import Frame
from agent.monitors.engine import Engine, MemoryFiredStore, MemorySequence, SeededIds
from agent.monitors.model import parse_monitor
from agent.pipeline import Pipeline, run_recording
from tests.agent.daemon.conftest import engine_frame, oil_monitor

VEHICLE = load_vehicle(demo_buses())
T0 = 1_700_000_000.0


def _pipeline(refresh: int = 60) -> Pipeline:
    engine = Engine(
        "VIN", None, VEHICLE.catalog, MemoryFiredStore(), MemorySequence(), event_ids=SeededIds()
    )
    body = oil_monitor("120", id="oil")
    body["subscribeParam"]["refreshEvent"] = refresh
    parsed = parse_monitor(body, catalog=VEHICLE.catalog, delivery_problems=False)
    assert parsed.monitor is not None, parsed.problems
    engine.set_monitor(parsed.monitor)
    decoder = Decoder(VEHICLE)
    decoder.use(engine.wanted_names())
    return Pipeline(decoder, engine)


def _oil(temp: float, at: float) -> Frame:
    frame_id, data = engine_frame(temp)
    return Frame(at, frame_id, data)


def _when(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _hot_drive(seconds: float, step: float = 0.07) -> list[Frame]:
    """The oil hot from the start (one frame every 70 ms, alive), cooled down at the end."""
    count = int(seconds / step)
    return [_oil(140 if i < count - 1 else 100, T0 + i * step) for i in range(count)]


def test_a_deadline_between_two_inputs_runs_at_its_own_time_before_the_later_input() -> None:
    pipeline = _pipeline(refresh=60)
    fired: list[tuple[float, bool, datetime]] = []
    for frame in _hot_drive(61.0):
        fired += [
            (frame.timestamp, e.refresh, e.event_date)
            for e in pipeline.step(frame, frame.timestamp)
        ]
    # no frame at T0 + 60 (60 / 0.07 is not whole): the reminder comes out of the step of the
    # first frame after it, dated when it fell due, not when that frame arrived
    assert [(refresh, when) for _, refresh, when in fired] == [
        (False, _when(T0)),
        (True, _when(T0 + 60)),
    ]
    assert T0 + 60 < fired[1][0] < T0 + 60.07
    assert pipeline.frames == len(_hot_drive(61.0)) and pipeline.fixes == 0


def test_the_daemons_steps_and_a_recording_give_the_same_events() -> None:
    frames = _hot_drive(130.0)
    recorded = list(run_recording(_pipeline(refresh=30), frames))
    live = _pipeline(refresh=30)
    stepped = [e for f in frames for e in live.step(f, f.timestamp)]
    stepped += live.due(frames[-1].timestamp)
    assert [(e.refresh, e.event_date) for e in stepped] == [
        (e.refresh, e.event_date) for e in recorded
    ]
    reminders = [e.event_date for e in recorded if e.refresh]
    assert reminders == [_when(T0 + 30 * k) for k in (1, 2, 3, 4)]
