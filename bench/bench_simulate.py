"""Simulator throughput: frames of the demo drive from agent.simulate against a plain cantools
encode loop of the same messages, in the same run.

The simulator resolves scenario values through the signal map, interpolates timelines, rolls
counters, computes checksums (a second encode) and pages multiplexed messages. The baseline
encodes each message once per cycle with constant, pre-built signal dicts: the floor any
DBC-based generator pays. Also printed: how many times faster than real time the drive is
generated (the margin a live bench has), and NMEA sentences per second.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import cantools
from harness import guard, pick, stage, write_results

from agent.can.dbc import DEMO_DBC, DEMO_MAP
from agent.simulate import FrameBuilder, Simulation, load_database, load_scenario, load_signal_map

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "docs" / "scenarios" / "night-depot-exit.toml"
RUNS = pick(5, 1)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def best(runs: dict[str, Callable[[], int]]) -> dict[str, tuple[float, int]]:
    """Fastest wall time of each run, rounds interleaved so machine load hits all alike."""
    found = dict.fromkeys(runs, (float("inf"), 0))
    for _ in range(RUNS):
        for name, run in runs.items():
            start = time.perf_counter()
            count = run()
            found[name] = (min(found[name][0], time.perf_counter() - start), count)
    return found


def simulator_frames() -> int:
    builder = FrameBuilder(load_database([DEMO_DBC]), load_signal_map(DEMO_MAP))
    return sum(1 for _ in Simulation(load_scenario(SCENARIO, time.time()), builder).frames())


def baseline_frames() -> int:
    db = cantools.database.load_file(str(DEMO_DBC))
    duration = load_scenario(SCENARIO, time.time()).duration
    plan = []
    for message in db.messages:
        period = (message.cycle_time or 100) / 1000
        mux = [s for s in message.signals if s.is_multiplexer]
        page = {mux[0].name: 0} if mux else {}
        signals = [
            s for s in message.signals if not mux or s.is_multiplexer or not s.multiplexer_ids
            or 0 in s.multiplexer_ids
        ]  # fmt: skip
        data = {s.name: 0 for s in signals} | page
        for s in signals:
            if s.minimum is not None and s.minimum > 0:
                data[s.name] = s.minimum
        plan.append((message, data, int(duration / period) + 1))
    count = 0
    for message, data, repeat in plan:
        for _ in range(repeat):
            message.encode(data)
            count += 1
    return count


def simulator_sentences() -> int:
    builder = FrameBuilder(load_database([DEMO_DBC]), load_signal_map(DEMO_MAP))
    return sum(1 for _ in Simulation(load_scenario(SCENARIO, time.time()), builder).sentences())


def main() -> None:
    guard("bench_simulate")
    with stage("simulate", 15):
        measure()


def measure() -> None:
    duration = load_scenario(SCENARIO, time.time()).duration
    print(f"machine: {os.cpu_count()} CPU(s), {cpu_model()}, Python {platform.python_version()}")
    print(f"scenario: {SCENARIO.name}, {duration:g} s of driving, best of {RUNS} runs")
    found = best({"sim": simulator_frames, "base": baseline_frames, "nmea": simulator_sentences})
    (sim_time, sim_frames), (base_time, base_frames) = found["sim"], found["base"]
    nmea_time, sentences = found["nmea"]
    rate = sim_frames / sim_time
    print(f"simulator : {sim_frames} frames in {sim_time:.3f} s = {rate:,.0f} frames/s"
          f" ({duration / sim_time:.0f}x real time)")  # fmt: skip
    print(f"baseline  : {base_frames} plain cantools encodes in {base_time:.3f} s = "
          f"{base_frames / base_time:,.0f} frames/s")  # fmt: skip
    ratio = (sim_time / sim_frames) / (base_time / base_frames)
    print(f"ratio     : the simulator costs {ratio:.2f}x a plain encode per frame")
    print(f"NMEA      : {sentences} sentences in {nmea_time:.3f} s = "
          f"{sentences / nmea_time:,.0f} sentences/s")  # fmt: skip
    write_results("simulate", {"simulator_frames_per_s": rate, "simulator_cost_vs_encode": ratio})


if __name__ == "__main__":
    main()
