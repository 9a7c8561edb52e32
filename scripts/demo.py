"""``make demo``: the whole edgemon chain on this machine, in about two minutes.

A throwaway CA, mosquitto (TLS, per-vehicle ACL), the backend, an HTTPS webhook receiver that
checks Standard Webhooks signatures, two monitors created through the API, a simulated night
drive replayed by the agent; each webhook is printed as it arrives, then a summary. Everything
started here is stopped here by PID, also on Ctrl-C. Exit 0 when every event the agent
published was delivered.

    python -m scripts.demo [--scenario FILE] [--keep] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

from agent.simulate import load_scenario
from scripts.chain import SCENARIO, Chain, pid_alive
from scripts.demo_monitors import leaving_depot_at_night, oil_hot_while_driving
from scripts.receiver import Notification

T0 = time.monotonic()
BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"
if not sys.stdout.isatty():
    BOLD = DIM = GREEN = RED = RESET = ""


def say(text: str) -> None:
    print(f"{DIM}[{time.monotonic() - T0:6.1f}s]{RESET} {text}", flush=True)


class Show:
    """Prints each notification as the receiver accepts it."""

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self.labels: dict[str, str] = {}
        self.count = 0

    def __call__(self, note: Notification) -> None:
        self.count += 1
        body = note.body
        label = self.labels.get(body.get("monitorId", ""), body.get("monitorId", "?"))
        for event in note.events:
            when = datetime.fromisoformat(event["eventDate"].replace("Z", "+00:00"))
            local = when.astimezone(self.zone).strftime("%H:%M:%S %Z")
            values = ", ".join(
                f"{v['data']}={v['value']['body']['literalValue']}" for v in event["values"]
            )
            kinds = ", ".join(e["type"] for e in event["extensions"])
            say(
                f"{GREEN}{BOLD}webhook #{self.count}{RESET} {label!r} vin {event['vin']} at "
                f"{local}{' (reminder)' if event['refresh'] else ''}"
            )
            print(f"           values: {values or '-'}; extensions: {kinds or '-'}")
        print(f"           webhook-id {note.webhook_id}, signature verified", flush=True)


def _progress(chain: Chain, started: float, duration: float) -> None:
    """Waits for the drive to end, printing a line every 15 s."""
    shown = 0.0
    while (elapsed := time.monotonic() - started) < duration + 3:
        if elapsed - shown >= 15:
            shown = elapsed
            events = len(chain.observer.events()) if chain.observer else 0
            say(f"{DIM}drive {elapsed:5.0f}/{duration:.0f} s, events published so far: {events}")
        if not chain.agent.running():
            raise RuntimeError(f"the agent stopped:\n{chain.agent.tail()}")
        time.sleep(0.2)


def _summary(chain: Chain) -> bool:
    published = {s.json()["eventId"]: s for s in chain.observer.events()} if chain.observer else {}
    notes = chain.receiver.notifications()
    delivered: dict[str, float] = {}
    for note in notes:
        for event in note.events:
            delivered.setdefault(_event_key(note.body["monitorId"], event), note.arrived)
    latencies = []
    for seen in published.values():
        key = _event_key(seen.json()["monitorId"], seen.json())
        if key in delivered:
            latencies.append((delivered[key] - seen.arrived) * 1000)
    missing = len(published) - len(latencies)
    print(f"\n{BOLD}summary{RESET}")
    print(f"  events fired by the agent (seen on MQTT): {len(published)}")
    print(
        f"  delivered to the webhook receiver:        {len(latencies)}"
        f" ({len(notes)} request(s), {len({n.webhook_id for n in notes})} webhook-id(s))"
    )
    tally = chain.receiver.tally
    print(f"  refused: {tally.refused}, bad signatures: {tally.bad_signature}")
    if latencies:
        print(
            f"  latency MQTT publish -> webhook received: min {min(latencies):.0f} ms, "
            f"median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
        )
    if missing:
        print(f"  {RED}{missing} event(s) not delivered{RESET}")
    return bool(published) and missing == 0 and tally.bad_signature == 0


def _event_key(monitor_id: str, event: dict[str, object]) -> str:
    """Webhook events carry no event id (Stellantis shape): match on what identifies one."""
    return f"{monitor_id}|{event['vin']}|{event['eventDate']}|{event['refresh']}"


def run(workdir: Path, scenario_path: Path) -> bool:
    scenario = load_scenario(scenario_path, time.time())
    show = Show(scenario.timezone)
    chain = Chain(workdir, scenario=scenario_path, on_notification=show)
    try:
        say(f"throwaway CA and certificates in {workdir / 'pki'}")
        chain.start_services()
        say(
            "mosquitto from deploy/mosquitto (TLS, per-vehicle ACL): vehicles by certificate on "
            f"127.0.0.1:{chain.broker.cert_port}, services by password on :{chain.broker.port}, "
            f"pid {chain.broker.process.pid if chain.broker.process else '?'}"
        )
        say(f"backend API on {chain.api_url}, pid {chain.backend.pid}")
        say(f"webhook receiver on {chain.receiver.url} (Standard Webhooks signatures checked)")
        for make in (leaving_depot_at_night, oil_hot_while_driving):
            definition = make(chain.receiver.url + "/hooks/edgemon")
            monitor_id = chain.create_monitor(definition)
            show.labels[monitor_id] = definition["label"]
            say(f"monitor {definition['label']!r} created through the API: {monitor_id}")
        chain.write_drive(start=scenario.start.isoformat())
        local = scenario.start.strftime("%Y-%m-%d %H:%M")
        say(
            f"simulated drive {scenario.name!r}: {scenario.duration:.0f} s from {local} "
            f"{scenario.timezone} (GPS time), written as a candump log + NMEA"
        )
        chain.start_agent()
        chain.wait_for(chain.monitors_applied, 30, "the agent to apply the monitors", chain.agent)
        started = time.monotonic()
        say(
            f"agent {chain.identity.vin} running (pid {chain.agent.pid}), monitors applied; "
            "driving..."
        )
        _progress(chain, started, scenario.duration)
        chain.wait_for(lambda: _all_delivered(chain), 20, "the last deliveries")
        return _summary(chain)
    finally:
        pids = chain.pids()
        chain.stop()
        left = [pid for pid in pids if pid_alive(pid)]
        say(
            f"stopped agent, backend, receiver and mosquitto (pids {pids})"
            + (f"; {RED}still alive: {left}{RESET}" if left else "")
        )


def _all_delivered(chain: Chain) -> bool:
    if chain.observer is None:
        return True
    notes = chain.receiver.notifications()
    delivered = {_event_key(n.body["monitorId"], e) for n in notes for e in n.events}
    events = [s.json() for s in chain.observer.events()]
    return all(_event_key(e["monitorId"], e) in delivered for e in events)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C, and SIGTERM/SIGHUP too, unwind through run()'s finally, which stops every process
    # by PID. (SIGINT is set explicitly: a shell starts background jobs with it ignored.)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="work here (default: a new temp dir); removed afterwards unless --keep",
    )
    args = parser.parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgemon-demo-"))
    print(
        f"{BOLD}edgemon demo{RESET}: simulated drive -> agent -> MQTT (TLS) -> backend -> "
        "HTTPS webhook\n"
    )
    try:
        ok = run(workdir, args.scenario)
    except KeyboardInterrupt:
        print("\ninterrupted: everything started was stopped", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"{RED}demo failed: {exc}{RESET}\n(logs in {workdir})", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.keep:
        print(f"  logs and configuration kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
