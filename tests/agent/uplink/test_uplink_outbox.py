"""agent.uplink.outbox: commit before publish, order, acks, bounds with counted drops, restart
safety."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.errors import OutboxError
from agent.uplink.outbox import Outbox
from agent.wire import event_from_json
from tests.agent.daemon.conftest import make_event


def _fill(outbox: Outbox, count: int, now: float = 1000.0) -> list[str]:
    events = [make_event(outbox.next()) for _ in range(count)]
    outbox.append(events, now=now)
    return [e.event_id for e in events]


def test_pending_is_in_seq_order_and_ack_removes(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    ids = _fill(outbox, 5)
    pending = outbox.pending(10)
    assert [p.event_id for p in pending] == ids
    assert [p.seq for p in pending] == [1, 2, 3, 4, 5]
    assert event_from_json(pending[0].payload).event_id == ids[0]
    assert outbox.ack(ids[1]) is True
    assert outbox.ack(ids[1]) is False  # a duplicate PUBACK changes nothing
    assert outbox.depth() == 4
    assert [p.seq for p in outbox.pending(2)] == [1, 3]
    assert [p.seq for p in outbox.pending(10, after_seq=3)] == [4, 5]
    outbox.close()


def test_restart_keeps_events_and_never_repeats_seq(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    ids = _fill(outbox, 3)
    outbox.ack_many(ids)  # everything acknowledged: the table is empty
    outbox.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert again.depth() == 0
    assert again.next() == 4
    again.close()


def test_bounds_drop_oldest_and_count(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_events=5, max_age=100.0)
    _fill(outbox, 4, now=1000.0)
    _fill(outbox, 3, now=1050.0)
    assert outbox.depth() == 5
    assert outbox.dropped == 2
    assert [p.seq for p in outbox.pending(10)] == [3, 4, 5, 6, 7]
    assert outbox.prune(now=1101.0) == 2  # seq 3-4 were committed at 1000
    assert [p.seq for p in outbox.pending(10)] == [5, 6, 7]
    assert outbox.counters["dropped_count"] == 2 and outbox.counters["dropped_age"] == 2
    outbox.close()
    assert Outbox(tmp_path / "o.sqlite").dropped == 4  # the counter is persisted


def test_size_bound_drops_oldest(tmp_path: Path) -> None:
    probe = Outbox(tmp_path / "p.sqlite")
    _fill(probe, 1)
    size = len(probe.pending(1)[0].payload)
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=size * 3 + size // 2)
    _fill(outbox, 5)
    assert [p.seq for p in outbox.pending(10)] == [3, 4, 5]
    assert outbox.counters["dropped_bytes"] == 2


@dataclass(frozen=True)
class _Fired:
    fired: bool
    last_fired: float | None


def test_fired_state_is_committed_with_the_next_append(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", fired_type=_Fired)
    outbox.save("m1", _Fired(True, 12.5))
    assert outbox.load("m1") == _Fired(True, 12.5)  # read-your-writes before the commit
    outbox.close()  # close commits what is buffered
    again = Outbox(tmp_path / "o.sqlite", fired_type=_Fired)
    assert again.load("m1") == _Fired(True, 12.5)
    again.delete("m1")
    assert again.load("m1") is None
    again.append([make_event(again.next())])
    again.close()
    assert Outbox(tmp_path / "o.sqlite", fired_type=_Fired).load("m1") is None


def test_duplicate_event_is_an_outbox_error_and_nothing_is_half_written(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    event = make_event(outbox.next())
    outbox.append([event])
    with pytest.raises(OutboxError):
        outbox.append([make_event(outbox.next()), event])
    assert outbox.depth() == 1


def test_unusable_path_is_an_outbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(blocker / "o.sqlite")


def test_committed_events_survive_sigkill(tmp_path: Path) -> None:
    """A child appends in batches and is killed by SIGKILL; every committed batch is there."""
    db = tmp_path / "o.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from agent.uplink.outbox import Outbox
        from tests.agent.daemon.conftest import make_event
        outbox = Outbox({str(db)!r})
        for batch in range(20):
            events = [make_event(outbox.next()) for _ in range(10)]
            outbox.append(events)
            print(batch, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert proc.returncode == -9
    committed = len(proc.stdout.split())
    outbox = Outbox(db)
    assert outbox.depth() == committed * 10 == 200
    assert [p.seq for p in outbox.pending(1000)] == list(range(1, 201))
    json.loads(outbox.pending(1)[0].payload)
