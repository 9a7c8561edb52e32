"""Round trip on real production DBCs (PyPI ``opendbc``): random valid values encoded by
cantools, pushed through the Decoder, must come back exactly as cantools decodes them, and as
chosen wherever signals do not overlap."""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path
from typing import Any

import opendbc
import pytest
from cantools.database.can import Message

from agent.can.dbc import BusSpec, Vehicle, load_vehicle
from agent.can.decode import Decoder, signal_bits
from agent.can.frame_layout import placement
from agent.errors import DbcError
from agent.model import Frame
from agent.state import VehicleState
from tests.agent.can.payloads import (
    decode_each,
    encode_raw,
    expected_value,
    plain,
    random_raw_values,
)

DBC_DIR = Path(opendbc.__file__).resolve().parent / "dbc"
DBC_FILES = sorted(DBC_DIR.glob("*.dbc"))
FRAMES_PER_MESSAGE = 3


@cache
def vehicle_of(path: Path) -> Vehicle | DbcError:
    try:
        return load_vehicle([BusSpec("can0", (path,), None)])
    except DbcError as exc:
        return exc


def overlapping(message: Message, raw: dict[str, Any]) -> set[str]:
    """Signals of this frame sharing bits with another encoded signal."""
    bits = {name: signal_bits(message.get_signal_by_name(name)) for name in raw}
    return {a for a in bits for b in bits if a != b and bits[a] & bits[b]}


def check_message(
    decoder: Decoder, state: VehicleState, msg: Message, rng: random.Random, t: float
) -> bool:
    """Feed random frames of one message and compare; False when cantools cannot encode it.

    Some non-strict DBCs hold signals cantools cannot encode (GM "...Group" signals spanning
    others): those messages get random payloads, checked against cantools' decoding only.
    """
    encodable = True
    for _ in range(FRAMES_PER_MESSAGE):
        raw = random_raw_values(msg, rng)
        try:
            data = encode_raw(msg, raw)
        except Exception:
            encodable, raw = False, {}
            data = rng.randbytes(msg.length)
        frame = Frame(t, msg.frame_id, data, msg.is_extended_frame, msg.is_fd)
        before = decoder.counters["decoded"]
        decoder.feed(frame, state)
        try:
            expected = msg.decode(data, decode_choices=True)
        except Exception:  # a multiplexer value the DBC lacks, a signal past the end...
            each = decode_each(msg, data)  # overlapping signals: cantools one by one
            if each is None:
                assert decoder.counters["decoded"] == before  # counted as a skip, not stored
                continue
            # cantools encodes overlapping signals at shifted places: only its decoding counts.
            expected, raw = each, {}
        shared = overlapping(msg, raw)
        for name, value in expected.items():
            got = state.get(f"{msg.name}.{name}")
            assert got is not None, (msg.name, name)
            assert got.value == plain(value), (msg.name, name)
            signal = msg.get_signal_by_name(name)
            if name in raw and name not in shared and not signal.is_float:
                assert got.value == expected_value(signal, raw[name]), (msg.name, name)
    return encodable


@pytest.mark.parametrize("path", DBC_FILES, ids=[p.name for p in DBC_FILES])
def test_opendbc_round_trip(path: Path) -> None:
    loaded = vehicle_of(path)
    if isinstance(loaded, DbcError):
        # cantools cannot read it even non-strict: the error is the clear one-liner.
        message = str(loaded)
        assert str(path) in message and "\n" not in message and "cannot load DBC" in message
        return
    decoder = Decoder(loaded)
    decoder.use(loaded.catalog.names())
    state = VehicleState()
    rng = random.Random(path.name)
    messages = [m for m in loaded.buses["can0"].by_name.values() if m.signals]
    encoded = sum(check_message(decoder, state, m, rng, 1.0) for m in messages)
    assert encoded >= 0.4 * len(messages), f"only {encoded}/{len(messages)} messages encodable"
    assert decoder.counters["decoded"] > 0
    assert decoder.counters["skipped_bad_length"] == 0


def test_every_opendbc_file_loads() -> None:
    """opendbc 0.3.1 ships 58 DBCs; 12 needed repairs (agent.can.dbc_repair) and all must load."""
    failed = {p.name: str(e) for p in DBC_FILES if isinstance(e := vehicle_of(p), DbcError)}
    assert len(DBC_FILES) >= 58
    assert not failed


def test_signal_bits_match_cantools_on_every_opendbc_signal() -> None:
    """The masks of rolling counters rest on signal_bits: check it against cantools' encoder,
    one signal at a time (all ones in that signal, nothing else)."""
    checked = 0
    for path in DBC_FILES:
        loaded = vehicle_of(path)
        if isinstance(loaded, DbcError):
            continue
        for msg in loaded.buses["can0"].by_name.values():
            for signal in msg.signals:
                if signal.multiplexer_ids or signal.is_multiplexer:
                    continue
                if placement(signal, msg.length) is None:  # float, or past the payload end
                    continue
                single = Message(msg.frame_id, msg.name, msg.length, [signal], strict=False,
                                 is_extended_frame=msg.is_extended_frame)  # fmt: skip
                ones = -1 if signal.is_signed else (1 << signal.length) - 1
                data = single.encode({signal.name: ones}, scaling=False, strict=False)
                assert int.from_bytes(data, "little") == signal_bits(signal), (msg.name, signal)
                checked += 1
    assert checked > 15_000
