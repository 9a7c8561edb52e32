"""agent.shipped: the installed data files when there, else the checkout's."""

from __future__ import annotations

from pathlib import Path

from agent import shipped
from tests.conftest import ROOT


def test_a_prefix_without_data_files_falls_back_to_the_checkout(tmp_path: Path) -> None:
    assert shipped.share_dir(str(tmp_path)) is None
    assert shipped.demo_dbc(str(tmp_path)) == ROOT / "dbc" / "demo_vehicle.dbc"
    assert shipped.demo_map(str(tmp_path)).is_file()


def test_a_prefix_with_data_files_wins(tmp_path: Path) -> None:
    (tmp_path / "share" / "edgemon" / "dbc").mkdir(parents=True)
    assert shipped.share_dir(str(tmp_path)) == tmp_path / "share" / "edgemon"
    assert shipped.demo_dbc(str(tmp_path)) == tmp_path / "share/edgemon/dbc/demo_vehicle.dbc"
