"""Time triggers: Daily and one-off windows in an IANA time zone (zoneinfo + tzdata).

Rules (see docs/monitors-time.md):
- A Daily window opens at local midnight + ``start`` (wall clock) and closes ``duration`` later
  on the wall clock, so "22:00 for 8 h" closes at 06:00 local time every day, including the
  nights when daylight saving time begins or ends (the window then lasts 7 h or 9 h).
- A wall time that does not exist (the spring-forward gap) means the instant of the change
  (02:30 -> 03:00 in Paris), so a window keeps exactly those wall-clock times of its span that
  exist that day; a wall time that happens twice (autumn) means its first occurrence
  (zoneinfo ``fold=0``).
- ``day`` and ``week`` rules (ISO weekday, ISO week number, ranges like ``w34-w46`` that may wrap
  over the new year) apply to the date the window opens: a Monday 22:00-02:00 window belongs to
  Monday.
- A ``None`` (one-off) entry opens at an absolute RFC 3339 time (without an offset: local time
  of the trigger's zone) and closes ``duration`` later, or never.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.monitors.fields import Fields
from agent.suggest import did_you_mean

DEFAULT_TIME_ZONE = "Europe/Paris"
_DAY_SECONDS = 86_400.0
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,3}$")  # IANA
_WEEK = re.compile(r"^[wW](\d{1,2})(?:\s*-\s*[wW]?(\d{1,2}))?$")


@dataclass(frozen=True, slots=True)
class DailyWindow:
    start_s: float  # from local midnight, wall clock
    duration_s: float
    days: frozenset[int] = frozenset()  # ISO weekdays 1..7; empty = every day
    weeks: frozenset[int] = frozenset()  # ISO weeks 1..53; empty = every week


@dataclass(frozen=True, slots=True)
class OnceWindow:
    start: float  # epoch seconds
    end: float | None  # None: stays open


@dataclass(frozen=True, slots=True)
class TimeTrigger:
    name: str
    time_zone: str
    windows: tuple[DailyWindow | OnceWindow, ...]
    require_in_use: bool = True


def parse_duration(text: str) -> float | None:
    """Seconds of an ISO-8601 duration (``PT14H30M``, ``P1D``), or None if malformed."""
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return (
        parts["w"] * 7 * _DAY_SECONDS
        + parts["d"] * _DAY_SECONDS
        + parts["h"] * 3600
        + parts["m"] * 60
        + parts["s"]
    )


def parse_weeks(text: str) -> frozenset[int] | None:
    match = _WEEK.match(text.strip())
    if match is None:
        return None
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    if not (1 <= first <= 53 and 1 <= last <= 53):
        return None
    if first <= last:
        return frozenset(range(first, last + 1))
    return frozenset(range(first, 54)) | frozenset(range(1, last + 1))  # wraps over new year


def parse_day(text: str) -> int | None:
    return _DAYS.get(text.strip()[:3].lower()) if len(text.strip()) >= 3 else None


_TIME_KEYS = {"timeZone", "time.zone", "times", "requireInUse"}
_ENTRY_KEYS = {"recurrence", "start", "duration", "occurence", "occurrence"}


def load_zone(name: str) -> ZoneInfo | None:
    """The IANA zone of that name, or None. A folder of the database (``"Europe"``) raises
    IsADirectoryError inside zoneinfo, and a path or NUL a ValueError: none is a zone."""
    if len(name) > 64 or not _ZONE_NAME.match(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def parse_time(name: str, fields: Fields) -> TimeTrigger | None:
    report = fields.report
    before = len(report.problems)
    fields.unknown(_TIME_KEYS)
    if "time.zone" in fields.obj:
        report.warn(fields.at("time.zone"), "read as timeZone (quickstart spelling)")
    zone_name = fields.string("timeZone", "time.zone") or DEFAULT_TIME_ZONE
    tz = load_zone(zone_name)
    if tz is None:
        shown = zone_name if len(zone_name) <= 64 else f"{zone_name[:64]}..."
        report.problem(fields.at("timeZone"), f"unknown time zone {shown!r} (IANA name)")
    require_in_use = fields.boolean("requireInUse", default=True)
    entries = fields.array("times", required=True)
    if entries is not None and not entries:
        report.problem(fields.at("times"), "needs at least one entry")
    windows: list[DailyWindow | OnceWindow] = []
    for path, item in entries or []:
        entry = Fields.of(item, path, report)
        window = None if entry is None or tz is None else _parse_entry(entry, tz)
        if window is not None:
            windows.append(window)
    if len(report.problems) > before:
        return None
    return TimeTrigger(name, zone_name, tuple(windows), require_in_use)


def _parse_entry(entry: Fields, tz: ZoneInfo) -> DailyWindow | OnceWindow | None:
    report = entry.report
    entry.unknown(_ENTRY_KEYS)
    recurrence = entry.string("recurrence") or "Daily"
    start = entry.string("start", required=True)
    duration_text = entry.string("duration")
    duration = None
    if duration_text is not None:
        duration = parse_duration(duration_text)
        if duration is None or duration <= 0:
            report.problem(
                entry.at("duration"), f"not a positive ISO-8601 duration: {duration_text!r}"
            )
            return None
    if recurrence == "None":
        if entry.has("occurence", "occurrence"):
            report.problem(entry.at("occurence"), "is allowed only with recurrence Daily")
        return None if start is None else _parse_once(entry, start, duration, tz)
    if recurrence != "Daily":
        report.problem(entry.at("recurrence"), f"must be Daily or None, got {recurrence!r}")
        return None
    if duration_text is None:
        report.problem(entry.at("duration"), "is required for a Daily entry")
    start_s = None if start is None else parse_duration(start)
    if start is not None and (start_s is None or start_s >= _DAY_SECONDS):
        report.problem(entry.at("start"), f"must be an ISO-8601 duration under 24 h: {start!r}")
    days, weeks = _parse_occurrence(entry)
    if start_s is None or duration is None or days is None or weeks is None:
        return None
    return DailyWindow(start_s, duration, days, weeks)


def _parse_once(
    entry: Fields, start: str, duration: float | None, tz: ZoneInfo
) -> OnceWindow | None:
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        entry.report.problem(entry.at("start"), f"not an RFC 3339 date-time: {start!r}")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    begin = moment.timestamp()
    return OnceWindow(begin, None if duration is None else begin + duration)


def _parse_occurrence(entry: Fields) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    found = entry.find("occurence", "occurrence")
    if found is None:
        return frozenset(), frozenset()
    key, value = found
    if isinstance(value, list):  # bare day array (reference §7.2)
        value = {"day": value}
    occ = Fields.of(value, entry.at(key), entry.report)
    if occ is None:
        return None, None
    occ.unknown({"day", "week"})
    days: set[int] = set()
    weeks: set[int] = set()
    ok = True
    for path, item in occ.array("day") or []:
        day = parse_day(item) if isinstance(item, str) else None
        if day is None:
            hint = did_you_mean(item, _DAY_NAMES) if isinstance(item, str) else ""
            entry.report.problem(path, f"not a day (Mon..Sun): {item!r}{hint}")
            ok = False
        else:
            days.add(day)
    for path, item in occ.array("week") or []:
        parsed = parse_weeks(item) if isinstance(item, str) else None
        if parsed is None:
            entry.report.problem(path, f"not a week (w1..w53 or a range w34-w46): {item!r}")
            ok = False
        else:
            weeks |= parsed
    if not ok:
        return None, None
    return frozenset(days), frozenset(weeks)


class Schedule:
    """The compiled windows of one time trigger: inside now, and the next boundary."""

    def __init__(self, trigger: TimeTrigger) -> None:
        self.trigger = trigger
        self.tz = ZoneInfo(trigger.time_zone)

    def _daily_spans(
        self, window: DailyWindow, first: date, count: int
    ) -> list[tuple[float, float]]:
        spans = []
        for offset in range(count):
            day = first + timedelta(days=offset)
            if window.days and day.isoweekday() not in window.days:
                continue
            if window.weeks and day.isocalendar().week not in window.weeks:
                continue
            wall = datetime.combine(day, time()) + timedelta(seconds=window.start_s)
            end_wall = wall + timedelta(seconds=window.duration_s)
            spans.append((self.instant(wall), self.instant(end_wall)))
        return spans

    def instant(self, wall: datetime) -> float:
        """Epoch seconds of a naive local wall time (rules in the module docstring)."""
        first = wall.replace(tzinfo=self.tz, fold=0).timestamp()
        if datetime.fromtimestamp(first, self.tz).replace(tzinfo=None) == wall:
            return first
        # in the spring-forward gap: the change happens between the two readings
        low = int(wall.replace(tzinfo=self.tz, fold=1).timestamp())
        high = int(first)
        after = datetime.fromtimestamp(high, self.tz).utcoffset()
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self.tz).utcoffset() == after:
                high = middle
            else:
                low = middle
        return float(high)

    def _lookback_days(self, window: DailyWindow) -> int:
        return int((window.start_s + window.duration_s) // _DAY_SECONDS) + 2

    def inside(self, now: float) -> bool:
        today = datetime.fromtimestamp(now, self.tz).date()
        for window in self.trigger.windows:
            if isinstance(window, OnceWindow):
                if window.start <= now and (window.end is None or now < window.end):
                    return True
                continue
            back = self._lookback_days(window)
            for start, end in self._daily_spans(window, today - timedelta(days=back), back + 1):
                if start <= now < end:
                    return True
        return False

    def next_boundary(self, now: float) -> float | None:
        """The earliest window opening or closing strictly after ``now`` (None: never again)."""
        today = datetime.fromtimestamp(now, self.tz).date()
        best: float | None = None
        for window in self.trigger.windows:
            if isinstance(window, OnceWindow):
                candidates = [window.start] + ([] if window.end is None else [window.end])
            else:
                back = self._lookback_days(window)
                # week rules may skip most of a year: look up to 371 days ahead
                ahead = 8 if not window.weeks else 372
                spans = self._daily_spans(window, today - timedelta(days=back), back + ahead)
                candidates = [t for span in spans for t in span]
            for moment in candidates:
                if moment > now and (best is None or moment < best):
                    best = moment
        return best
