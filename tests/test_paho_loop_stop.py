"""Every MQTT client in the repository stops its network loop through ``stop_network_loop``.

paho 2.2's ``loop_stop()`` races the network thread's own exit after ``disconnect()`` (see
``agent/paho_compat.py``); one direct call in a test helper failed CI once, a year ahead on the
clock. This check keeps the next one out.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRECT = re.compile(r"\.loop_stop\(\)")
ALLOWED = {ROOT / "agent" / "paho_compat.py"}


def _python_files() -> list[Path]:
    found: list[Path] = []
    for top in ("agent", "backend", "bench", "scripts", "tests"):
        found.extend(p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)
    return found


def test_no_direct_loop_stop_outside_the_compat_helper() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _python_files()
        if path not in ALLOWED and path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if DIRECT.search(line)
    ]
    assert offenders == [], f"call stop_network_loop(client) instead: {offenders}"


def test_the_check_sees_a_direct_call(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("client.loop_stop()\n")
    assert DIRECT.search(sample.read_text())
