"""Repair the DBC text of files as they are found in the wild, before cantools parses it.

Pure: text in, repaired text and the list of repairs out. Production DBCs (opendbc's among them)
break the grammar in a few recurring ways that have exactly one reading:

- ``names``: a message or signal name that starts with a digit (``0_COUNTER``, ``2017_5``);
  DBC names are C identifiers. Renamed ``X_<name>`` everywhere it is used outside strings.
- ``extended_ids``: an id wider than 11 bits written without the extended flag (bit 31). A
  standard frame cannot carry it, so it is a 29-bit id: the flag is set on the message and on
  every statement that refers to it.
- ``unreadable_ids``: an id wider than 29 bits without the flag is no CAN id, and which bits were
  meant is a guess: that message (and what refers to it) is left out, the rest of the file loads.
- ``terminators``: a ``VAL_`` line whose ``;`` is missing gets one.
- ``comments``: a ``CM_`` statement that does not follow the grammar (``CM_ 145 "..."``, or no
  closing ``;``). Dropped: a comment does not change how a frame decodes.
- ``value_tables``: a ``VAL_`` statement for a signal that no message defines. Dropped.

What cannot be read without guessing is refused (:class:`DbcRepairError`): a name made only of
digits (it cannot be told from a number).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

RENAME_PREFIX = "X_"
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_MESSAGE = re.compile(r"^(BO_\s+)(\d+)(\s+)(\w+)(\s*:)", re.MULTILINE)
_SIGNAL = re.compile(r"^([ \t]*SG_\s+)(\w+)(?=\s+(?:[mM]\d*M?\s*)?:)", re.MULTILINE)
# every place a statement names a message by its id: BO_ 123, SG_ 123 Sig, VAL_ 123 Sig, ...
_ID_REFERENCE = re.compile(
    r"\b(BO_|SG_|VAL_|SIG_VALTYPE_|BO_TX_BU_|SG_MUL_VAL_|SIG_GROUP_|SIG_TYPE_REF_)(\s+)(\d+)\b"
)
_COMMENT_START = re.compile(r"^CM_\b", re.MULTILINE)
_GOOD_COMMENT = re.compile(
    r'CM_\s+(?:(?:BU_|EV_)\s+\w+\s+|BO_\s+\d+\s+|SG_\s+\d+\s+\w+\s+)?"(?:[^"\\]|\\.)*"\s*;',
    re.DOTALL,
)
# a bad comment ends with its string (and ';'), at a ';', or else at the end of its line
_ANY_COMMENT = re.compile(r'CM_[^";\n]*(?:"(?:[^"\\]|\\.)*"\s*;?|;|[^\n]*)', re.DOTALL)
_VALUE_TABLE = re.compile(r'^VAL_\s+(\d+)\s+(\w+)\b(?:"(?:[^"\\]|\\.)*"|[^";])*;[ \t]*\n?', re.M)
_STATEMENT = re.compile(
    r'^(?:CM_|BA_|VAL_|SIG_VALTYPE_|BO_TX_BU_|SG_MUL_VAL_|SIG_GROUP_)\s(?:"(?:[^"\\]|\\.)*"|[^";])*;'
    r"[ \t]*\n?",
    re.M,
)
_VECTOR_PSEUDO = "VECTOR__INDEPENDENT_SIG_MSG"
_EXTENDED_FLAG = 0x8000_0000
_MAX_EXAMPLES = 5


class DbcRepairError(ValueError):
    """The text has a defect that only a guess could repair."""


@dataclass(frozen=True, slots=True)
class Repair:
    """One kind of repair made to a file, how often, and a few examples."""

    kind: str  # "names", "extended_ids", "comments", "value_tables"
    count: int
    examples: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(self.examples)
        more = (
            f" and {self.count - len(self.examples)} more"
            if self.count > len(self.examples)
            else ""
        )
        return f"{_WHAT[self.kind].format(n=self.count)} ({shown}{more})"


_WHAT = {
    "names": f"renamed {{n}} name(s) starting with a digit to {RENAME_PREFIX}<name>",
    "extended_ids": "marked {n} message id(s) wider than 11 bits as extended (29-bit)",
    "comments": "dropped {n} CM_ comment(s) outside the DBC grammar",
    "value_tables": "dropped {n} VAL_ table(s) of signals no message defines",
    "terminators": "added the missing ';' to {n} VAL_ statement(s)",
    "unreadable_ids": "left out {n} message(s) whose id is wider than 29 bits without the"
    " extended flag (no CAN id; which bits are meant cannot be known)",
}


def repair_dbc_text(text: str) -> tuple[str, list[Repair]]:
    """The text with every known defect repaired, and one Repair per kind of defect found."""
    repairs: list[Repair] = []
    for step in (_drop_bad_comments, _terminate_value_tables, _rename_digit_names):
        text, repair = step(text)
        if repair is not None:
            repairs.append(repair)
    text, id_repairs = _flag_extended_ids(text)
    repairs += id_repairs
    text, repair = _drop_orphan_vals(text)
    return text, repairs if repair is None else [*repairs, repair]


def _repair(kind: str, examples: list[str]) -> Repair | None:
    if not examples:
        return None
    return Repair(kind, len(examples), tuple(examples[:_MAX_EXAMPLES]))


def _outside_strings(
    text: str, pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str]
) -> str:
    """Apply ``pattern.sub(replace, ...)`` to the parts of ``text`` that are not "strings"."""
    parts: list[str] = []
    end = 0
    for match in _STRING.finditer(text):
        parts.append(pattern.sub(replace, text[end : match.start()]))
        parts.append(match.group())
        end = match.end()
    parts.append(pattern.sub(replace, text[end:]))
    return "".join(parts)


def _drop_bad_comments(text: str) -> tuple[str, Repair | None]:
    dropped: list[str] = []
    parts: list[str] = []
    end = 0
    for start in _COMMENT_START.finditer(text):
        if start.start() < end or _GOOD_COMMENT.match(text, start.start()):
            continue
        bad = _ANY_COMMENT.match(text, start.start())
        assert bad is not None  # the pattern matches any text after "CM_"
        parts.append(text[end : bad.start()])
        dropped.append(f"line {text.count(chr(10), 0, bad.start()) + 1}")
        end = bad.end()
    parts.append(text[end:])
    return "".join(parts), _repair("comments", dropped)


def _rename_digit_names(text: str) -> tuple[str, Repair | None]:
    defined = [m.group(4) for m in _MESSAGE.finditer(text)]
    defined += [m.group(2) for m in _SIGNAL.finditer(text)]
    bad = sorted({name for name in defined if name[0].isdigit()})
    for name in bad:
        if name.isdigit():
            raise DbcRepairError(f"name {name!r} is a number: it cannot be told from an id")
    if not bad:
        return text, None
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in bad) + r")\b")
    text = _outside_strings(text, pattern, lambda m: RENAME_PREFIX + m.group(1))
    return text, _repair("names", [f"{n} -> {RENAME_PREFIX}{n}" for n in bad])


def _flag_extended_ids(text: str) -> tuple[str, list[Repair]]:
    wide: dict[int, str] = {}
    unreadable: dict[int, str] = {}
    for match in _MESSAGE.finditer(text):
        frame_id, name = int(match.group(2)), match.group(4)
        if frame_id & _EXTENDED_FLAG or frame_id < 0x800 or name == _VECTOR_PSEUDO:
            continue  # cantools leaves Vector's pseudo message out by itself
        (wide if frame_id <= 0x1FFF_FFFF else unreadable)[frame_id] = name
    repairs = []
    if unreadable:
        text = _drop_messages(text, set(unreadable))
        examples = [f"{name} {i:#x}" for i, name in unreadable.items()]
        repairs.append(Repair("unreadable_ids", len(examples), tuple(examples[:_MAX_EXAMPLES])))
    if not wide:
        return text, repairs

    def flagged(match: re.Match[str]) -> str:
        frame_id = int(match.group(3))
        if frame_id not in wide:
            return match.group()
        return f"{match.group(1)}{match.group(2)}{frame_id | _EXTENDED_FLAG}"

    text = _outside_strings(text, _ID_REFERENCE, flagged)
    examples = [f"{name} {i:#x}" for i, name in wide.items()]
    repairs.append(Repair("extended_ids", len(examples), tuple(examples[:_MAX_EXAMPLES])))
    return text, repairs


def _drop_messages(text: str, ids: set[int]) -> str:
    """Remove the messages with these ids and every statement that refers to them."""
    for frame_id in ids:
        block = re.compile(rf"^BO_\s+{frame_id}\s+\w+\s*:[^\n]*\n(?:[ \t]*SG_\s[^\n]*\n)*", re.M)
        text = block.sub("", text)

    def kept(match: re.Match[str]) -> str:
        bare = _STRING.sub('""', match.group())
        refers = any(int(ref.group(3)) in ids for ref in _ID_REFERENCE.finditer(bare))
        return "" if refers else match.group()

    return _STATEMENT.sub(kept, text)


def _terminate_value_tables(text: str) -> tuple[str, Repair | None]:
    """A ``VAL_`` line whose strings are closed but whose ``;`` is missing gets one."""
    fixed: list[str] = []

    def terminated(match: re.Match[str]) -> str:
        line = match.group()
        if _STRING.sub("", line).count('"') or line.rstrip().endswith(";"):
            return line
        fixed.append(f"line {text.count(chr(10), 0, match.start()) + 1}")
        return line.rstrip() + " ;"

    text = re.sub(r"^VAL_\s[^\n]*", terminated, text, flags=re.M)
    return text, _repair("terminators", fixed)


def _drop_orphan_vals(text: str) -> tuple[str, Repair | None]:
    signals: set[tuple[str, str]] = set()
    message_id = ""
    for line in text.splitlines():
        found = _MESSAGE.match(line)
        if found is not None:
            message_id = found.group(2)
            continue
        signal = _SIGNAL.match(line)
        if signal is not None and message_id:
            signals.add((message_id, signal.group(2)))
    dropped: list[str] = []

    def kept(match: re.Match[str]) -> str:
        if (match.group(1), match.group(2)) in signals:
            return match.group()
        dropped.append(f"VAL_ {match.group(1)} {match.group(2)}")
        return ""

    text = _VALUE_TABLE.sub(kept, text)
    return text, _repair("value_tables", dropped)
