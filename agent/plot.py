"""``replay --plot``: a replay's recording drawn with matplotlib (the ``plot`` extra), so that
"why did it fire, why not" is answered at a glance (issue 18).

One panel per signal the monitors read (numbers as lines, booleans and enums as steps), then
one panel per monitor: a band per trigger and one for the expression, green while true, red
while false, grey while unknown, titled with the expression; every event is a vertical line
across all panels (a dashed one for a reminder). Time is seconds since the recording's start.

matplotlib is imported here only, lazily, with the Agg canvas (no display, no pyplot state);
without it ``PlotUnavailable`` says how to install it. Artists carry a ``gid`` naming what
they show (``band:<monitor>:<trigger>``, ``event:<monitor>``), so tests and tools can read
the figure's structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import EdgemonError
from agent.monitors.data import THRESHOLD_OPS, DataTrigger
from agent.monitors.expr import Truth
from agent.monitors.model import Monitor
from agent.trace import Recording, SignalPoint

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_SIGNAL_PANELS = 12  # beyond, the figure is unreadable: the first ones are drawn, said
EXPRESSION = "(expression)"
COLOURS = {True: "#2e9d4f", False: "#d9534f", None: "#b0b0b0"}


class PlotUnavailable(EdgemonError):
    """matplotlib is not installed (the ``plot`` extra)."""


def _matplotlib() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 - optional, heavy: only for --plot
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'edgemon[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    return matplotlib


def build_figure(recording: Recording) -> Figure:
    """The figure of a recording (not written: ``write_png`` does)."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    start = recording.start or 0.0
    end = max(recording.end or start, start + 1e-3)
    signals = recording.signals[:MAX_SIGNAL_PANELS]
    monitors = recording.monitors
    heights = [1.0] * len(signals) + [0.5 + 0.35 * (len(m.triggers) + 1) for m in monitors]
    panels = max(1, len(heights))
    figure = Figure(figsize=(12, 1.0 + 1.6 * sum(heights or [1.0])), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False, height_ratios=heights or None)
    column = [row[0] for row in axes]
    for ax, name in zip(column, signals, strict=False):
        points = [p for p in recording.values if p.name == name]
        _signal_panel(ax, f"{name} [{recording.units[name]}]" if recording.units.get(name)
                      else name, points, (start, end))  # fmt: skip
    for ax, monitor in zip(column[len(signals) :], monitors, strict=False):
        rows = [t.name for t in monitor.triggers] + [EXPRESSION]
        _truth_panel(ax, monitor.id, rows, recording, (start, end))
        title = f"{monitor.id}: {monitor.label}   [{monitor.bool_exp}]"
        ax.set_title(title, fontsize=9, loc="left")
    for ax, name in zip(column, signals, strict=False):
        _thresholds(ax, name, monitors)
    panel_of = {m.id: column[len(signals) + i] for i, m in enumerate(monitors)}
    for mark in recording.events:  # on every signal panel, and on the monitor's own panel
        style = "--" if mark.refresh else "-"
        for ax in [*column[: len(signals)], panel_of[mark.monitor]]:
            ax.axvline(mark.t - start, color="#1f4e9c", linewidth=1.0, linestyle=style,
                       alpha=0.7, gid=f"event:{mark.monitor}")  # fmt: skip
    column[-1].set_xlim(0.0, end - start)
    column[-1].set_xlabel("seconds since the recording's start")
    hidden = len(recording.signals) - len(signals)
    note = f" ({hidden} more signal(s) not drawn)" if hidden > 0 else ""
    figure.suptitle(
        f"replay: {len(recording.events)} event(s){note}   bands: green true, red false, "
        "grey unknown; blue lines: events (dashed: reminders)",
        fontsize=10,
    )
    return figure


def _signal_panel(
    ax: Any, label: str, points: Sequence[SignalPoint], window: tuple[float, float]
) -> None:
    """One signal as a step line (the value holds until the next change); unknown is a gap."""
    start, end = window
    xs = [p.t - start for p in points] + [end - start]
    values = [p.value for p in points]
    labels: list[str] = []
    if any(isinstance(v, str) for v in values):  # an enum: one level per name seen
        labels = sorted({v for v in values if isinstance(v, str)})
        ys = [float(labels.index(v)) if isinstance(v, str) else math.nan for v in values]
    else:
        ys = [math.nan if v is None else float(v) for v in values]
    ys.append(ys[-1] if ys else math.nan)
    name = points[0].name if points else label
    ax.step(xs, ys, where="post", label=label, gid=f"signal:{name}")
    if labels:
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
    elif values and all(isinstance(v, bool) or v is None for v in values):
        ax.set_yticks([0, 1], ["false", "true"], fontsize=7)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, alpha=0.3)


def _thresholds(ax: Any, name: str, monitors: Sequence[Monitor]) -> None:
    """A dotted line at each numeric threshold a data trigger compares this signal with."""
    for monitor in monitors:
        for trigger in monitor.triggers:
            if not isinstance(trigger, DataTrigger) or trigger.data != name:
                continue
            if trigger.op not in THRESHOLD_OPS:
                continue
            for text in trigger.values:
                try:
                    level = float(text)
                except ValueError:
                    continue
                ax.axhline(level, color="#888888", linestyle=":", linewidth=1.0,
                           gid=f"threshold:{monitor.id}:{trigger.name}")  # fmt: skip


def _spans(
    recording: Recording, monitor: str, trigger: str | None, start: float, end: float
) -> list[tuple[float, float, Truth]]:
    """(from, width, truth) from the recorded changes; unknown before the first one."""
    changes = [(p.t, p.truth) for p in recording.truths
               if p.monitor == monitor and p.trigger == trigger]  # fmt: skip
    spans: list[tuple[float, float, Truth]] = []
    at, truth = start, None
    for t, value in changes:
        if t > at:
            spans.append((at - start, t - at, truth))
        at, truth = max(at, t), value
    spans.append((at - start, end - at, truth))
    return [s for s in spans if s[1] > 0]


def _truth_panel(
    ax: Any, monitor: str, rows: list[str], recording: Recording, window: tuple[float, float]
) -> None:
    start, end = window
    for row, name in enumerate(rows):
        trigger = None if name == EXPRESSION else name
        spans = _spans(recording, monitor, trigger, start, end)
        for truth in (True, False, None):
            ranges = [(x, w) for x, w, value in spans if value is truth]
            if ranges:
                ax.broken_barh(ranges, (row - 0.35, 0.7), facecolors=COLOURS[truth],
                               gid=f"band:{monitor}:{name}:{_word(truth)}")  # fmt: skip
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    for mark in recording.events:
        if mark.monitor == monitor:
            ax.plot([mark.t - start], [len(rows) - 1], marker="v", color="#1f4e9c",
                    markersize=8, linestyle="none", gid=f"fired:{monitor}")  # fmt: skip


def _word(truth: Truth) -> str:
    return "unknown" if truth is None else "true" if truth else "false"


def write_png(recording: Recording, path: Path) -> Figure:
    """Draw and write the PNG; the figure is returned (its structure is what a test reads)."""
    figure = build_figure(recording)
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise EdgemonError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return figure
