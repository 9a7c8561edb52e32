"""python-can interface options of a ``[[can]]`` bus (its ``[can.options]`` table), checked as far
as python-can can tell before the bus is ever opened.

Checked: the interface name against python-can's registry (``can.interfaces.VALID_INTERFACES``);
the option names and values against the interface class's ``__init__`` (python-can ``BACKENDS``):
a required parameter left out, a value of the wrong type where the signature is annotated, an
unknown name when the class takes no ``**kwargs``. Options that edgemon sets itself (``channel``,
``bitrate``, ``can_filters``...) are refused with the setting to use instead. An interface whose
module cannot be imported here (a driver package not installed on this machine) is checked by
name only; opening the bus then says what is missing.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

import can

from agent.errors import Problem

# set by edgemon from the [[can]] keys or by the source itself: never through options
OWN_KEYS = {
    "interface": "use interface in [[can]]",
    "bustype": "use interface in [[can]]",
    "channel": "use channel in [[can]]",
    "bitrate": "use bitrate in [[can]]",
    "fd": "use fd in [[can]]",
    "data_bitrate": "use data_bitrate in [[can]]",
    "receive_own_messages": "use receive_own_messages in [[can]]",
    "can_filters": "computed from the signals the monitors use",
}
_SCALARS = (str, int, float, bool)
_VARIADIC = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
MAX_OPTIONS = 64  # an interface takes a dozen at most


def interface_problems(interface: str, where: str) -> list[Problem]:
    if interface in can.interfaces.VALID_INTERFACES:
        return []
    known = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
    return [Problem(f"{where}.interface", f"unknown python-can interface {interface!r} ({known})")]


def option_problems(interface: str, options: Mapping[str, Any], where: str) -> list[Problem]:
    """Every problem of ``options`` for ``interface`` (``where`` is the bus's JSON path)."""
    if len(options) > MAX_OPTIONS:
        return [Problem(f"{where}.options", f"more than {MAX_OPTIONS} options")]
    found: list[Problem] = []
    for key, value in options.items():
        path = f"{where}.options.{key}"
        if key in OWN_KEYS:
            found.append(Problem(path, f"set by edgemon: {OWN_KEYS[key]}"))
        elif not isinstance(value, _SCALARS) or (isinstance(value, str) and "\x00" in value):
            found.append(Problem(path, "expected text, a number or true/false"))
    parameters = _parameters(interface)
    if parameters is not None:
        found += _missing(interface, parameters, options, where)
        found += _mismatched(interface, parameters, options, where)
    return found


def _missing(
    interface: str,
    parameters: Mapping[str, inspect.Parameter],
    options: Mapping[str, Any],
    where: str,
) -> list[Problem]:
    found = []
    for name, parameter in parameters.items():
        if name in ("self", "channel", *OWN_KEYS) or parameter.kind in _VARIADIC:
            continue
        if parameter.default is parameter.empty and name not in options:
            found.append(Problem(f"{where}.options.{name}", f"required by {interface}"))
    return found


def _mismatched(
    interface: str,
    parameters: Mapping[str, inspect.Parameter],
    options: Mapping[str, Any],
    where: str,
) -> list[Problem]:
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    found = []
    for key, value in options.items():
        path = f"{where}.options.{key}"
        if key in OWN_KEYS or not isinstance(value, _SCALARS):
            continue
        parameter = parameters.get(key)
        if parameter is None:
            if not takes_any:
                names = ", ".join(n for n in parameters if n not in ("self", "channel", "kwargs"))
                found.append(Problem(path, f"{interface} takes: {names}"))
            continue
        wanted = _simple_types(parameter.annotation)
        if wanted and not _fits(value, wanted):
            expected = "/".join(t.__name__ for t in wanted)
            found.append(Problem(path, f"expected {expected}, got {type(value).__name__}"))
    return found


def _parameters(interface: str) -> Mapping[str, inspect.Parameter] | None:
    backend = can.interfaces.BACKENDS.get(interface)
    if backend is None:
        return None
    module_name, class_name = backend
    try:
        bus_class = getattr(importlib.import_module(module_name), class_name)
        return inspect.signature(bus_class.__init__, eval_str=True).parameters
    except Exception:  # a driver module missing here, an annotation that cannot be evaluated
        return None


def _simple_types(annotation: Any) -> tuple[type, ...]:
    """The scalar types an annotation admits, or () when it is anything richer."""
    if annotation in _SCALARS:
        return (annotation,)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if members and all(a in _SCALARS for a in members):
            return tuple(members)
    return ()


def _fits(value: Any, wanted: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in wanted
    if isinstance(value, int) and float in wanted:
        return True
    return isinstance(value, wanted)
