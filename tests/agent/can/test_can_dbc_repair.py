"""DBCs as they are found: each known defect is repaired with one warning per kind and file,
and what only a guess could repair is refused (agent.can.dbc_repair, agent.can.dbc.load_dbc)."""

from __future__ import annotations

import logging
from pathlib import Path

import opendbc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.can.dbc import load_dbc
from agent.can.dbc_repair import DbcRepairError, repair_dbc_text
from agent.errors import DbcError

DBC_DIR = Path(opendbc.__file__).resolve().parent / "dbc"
HEADER = 'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: ECU\n\n'

# file -> the repair kinds it needs (found by loading every opendbc 0.3.1 DBC unrepaired)
NEEDS = {
    "psa_aee2010_r3.dbc": {"names"},
    "mazda_2017.dbc": {"names", "terminators"},
    "fca_giorgio.dbc": {"extended_ids"},
    "chrysler_cusw.dbc": {"extended_ids"},
    "gm_global_a_lowspeed.dbc": {"extended_ids", "value_tables"},
    "vw_meb.dbc": {"extended_ids"},
    "vw_mqbevo.dbc": {"extended_ids"},
    "toyota_2017_ref_pt.dbc": {"unreadable_ids"},
    "hyundai_kia_generic.dbc": {"comments"},
    "toyota_radar_dsu_tssp.dbc": {"comments"},
    "rivian_primary_actuator.dbc": {"value_tables"},
    "tesla_can.dbc": {"value_tables"},
}
PHRASES = {
    "names": "starting with a digit",
    "terminators": "missing ';'",
    "extended_ids": "as extended (29-bit)",
    "unreadable_ids": "wider than 29 bits",
    "comments": "CM_ comment(s) outside the DBC grammar",
    "value_tables": "VAL_ table(s) of signals no message defines",
}


def dbc_text(body: str) -> str:
    return HEADER + body


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_broken_opendbc_file_loads_with_one_warning_per_repair(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.can.dbc")
    warnings: list[str] = []
    database = load_dbc(DBC_DIR / name, warnings)
    assert database.messages
    repaired = [w for w in warnings if ": repaired: " in w]
    assert len(repaired) == len(NEEDS[name])
    for kind in NEEDS[name]:
        assert sum(PHRASES[kind] in w for w in repaired) == 1, (kind, repaired)
    logged = [r.getMessage() for r in caplog.records if ": repaired: " in r.getMessage()]
    assert logged == repaired  # printed once each, the same words


def test_stellantis_files_keep_their_signals() -> None:
    psa = load_dbc(DBC_DIR / "psa_aee2010_r3.dbc")
    names = {s.name for m in psa.messages for s in m.signals}
    assert {"X_0_COUNTER", "X_0_CHECKSUM"} <= names
    fca = load_dbc(DBC_DIR / "fca_giorgio.dbc")
    camera = fca.get_message_by_name("CAM_UNKNOWN_6")
    assert camera.is_extended_frame and camera.frame_id == 0x1E36001E


def test_healthy_file_has_no_repair() -> None:
    text = dbc_text('BO_ 291 Speed: 8 ECU\n SG_ Value : 0|16@1+ (0.1,0) [0|0] "km/h" ECU\n')
    assert repair_dbc_text(text) == (text, [])


def test_extended_id_is_flagged_in_every_reference() -> None:
    text = dbc_text(
        'BO_ 123456 Wide: 8 ECU\n SG_ Level : 0|8@1+ (1,0) [0|0] "" ECU\n\n'
        'CM_ SG_ 123456 Level "level 123456";\n'
        'BA_ "GenMsgCycleTime" BO_ 123456 100;\n'
        'VAL_ 123456 Level 0 "Off" 1 "On" ;\n'
    )
    fixed, repairs = repair_dbc_text(text)
    flagged = str(123456 | 0x8000_0000)
    assert [r.kind for r in repairs] == ["extended_ids"]
    assert fixed.count(flagged) == 4
    assert '"level 123456"' in fixed  # strings are left alone


def test_digit_names_are_renamed_outside_strings_only() -> None:
    text = dbc_text(
        'BO_ 100 2017_5: 8 ECU\n SG_ 0_COUNTER : 0|4@1+ (1,0) [0|0] "" ECU\n\n'
        'CM_ SG_ 100 0_COUNTER "0_COUNTER rolls";\nVAL_ 100 0_COUNTER 0 "zero" ;\n'
    )
    fixed, repairs = repair_dbc_text(text)
    assert [r.kind for r in repairs] == ["names"]
    assert repairs[0].count == 2
    assert "BO_ 100 X_2017_5:" in fixed
    assert fixed.count("X_0_COUNTER") == 3 and '"0_COUNTER rolls"' in fixed


def test_orphan_value_table_and_bad_comment_are_dropped() -> None:
    text = dbc_text(
        'BO_ 100 Gear: 8 ECU\n SG_ Position : 0|4@1+ (1,0) [0|0] "" ECU\n\n'
        'CM_ 100 "no object type";\nCM_ "no semicolon"\n'
        'VAL_ 100 Position 0 "P" 1 "R" ;\nVAL_ 100 Ghost 0 "none" ;\n'
    )
    fixed, repairs = repair_dbc_text(text)
    assert {r.kind: r.count for r in repairs} == {"comments": 2, "value_tables": 1}
    assert "Ghost" not in fixed and "no object type" not in fixed and "no semicolon" not in fixed
    assert 'VAL_ 100 Position 0 "P"' in fixed


def test_unreadable_id_leaves_out_that_message_only(tmp_path: Path) -> None:
    path = tmp_path / "odd.dbc"
    path.write_text(
        dbc_text(
            'BO_ 1075054137 Odd: 8 ECU\n SG_ A : 0|8@1+ (1,0) [0|0] "" ECU\n\n'
            'BO_ 200 Fine: 8 ECU\n SG_ B : 0|8@1+ (1,0) [0|0] "" ECU\n\n'
            'CM_ BO_ 1075054137 "gone";\nBA_ "GenMsgCycleTime" BO_ 1075054137 10;\n'
        ),
        encoding="ascii",
    )
    warnings: list[str] = []
    database = load_dbc(path, warnings)
    assert [m.name for m in database.messages] == ["Fine"]
    assert len(warnings) == 1 and "Odd 0x40140639" in warnings[0]


def test_a_name_made_of_digits_is_refused(tmp_path: Path) -> None:
    text = dbc_text('BO_ 100 Msg: 8 ECU\n SG_ 42 : 0|8@1+ (1,0) [0|0] "" ECU\n')
    with pytest.raises(DbcRepairError, match="'42' is a number"):
        repair_dbc_text(text)
    path = tmp_path / "digits.dbc"
    path.write_text(text, encoding="ascii")
    with pytest.raises(DbcError, match=r"digits\.dbc: cannot load DBC: name '42'"):
        load_dbc(path)


def test_signals_written_at_the_line_start_keep_their_value_tables() -> None:
    text = dbc_text(
        'BO_ 100 Gear: 8 ECU\nSG_ Position : 0|4@1+ (1,0) [0|0] "" ECU\n\n'
        'VAL_ 100 Position 0 "P" 1 "R" ;\n'
    )
    assert repair_dbc_text(text) == (text, [])


def test_a_bad_comment_never_swallows_what_follows() -> None:
    text = dbc_text(
        'BO_ 100 Gear: 8 ECU\n SG_ Position : 0|4@1+ (1,0) [0|0] "" ECU\n\n'
        'CM_ BO_ 100;\nCM_ SG_ 100\nBA_ "GenMsgCycleTime" BO_ 100 20;\n'
    )
    fixed, repairs = repair_dbc_text(text)
    assert {r.kind: r.count for r in repairs} == {"comments": 2}
    assert fixed.endswith('\n\n\nBA_ "GenMsgCycleTime" BO_ 100 20;\n')


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('BO_SGVALCM_ :;"\n0123456789xX\\'))))
def test_any_text_is_repaired_or_refused(text: str) -> None:
    try:
        fixed, repairs = repair_dbc_text(text)
    except DbcRepairError:
        return
    assert isinstance(fixed, str)
    assert all(r.count >= len(r.examples) > 0 for r in repairs)
