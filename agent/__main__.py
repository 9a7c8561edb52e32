"""``edgemon-agent``: a thin CLI. Each subcommand lives in ``agent/commands/<name>.py`` and exposes
``add_arguments(parser)`` and ``execute(args) -> int`` (the exit code).

Only the chosen subcommand's module is imported.
Errors of the tree in ``agent.errors`` print as one line (``edgemon-agent: ...``), exit 2 for
unusable arguments or files; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent import __version__
from agent.commands import chosen_level
from agent.errors import EdgemonError

# name -> (module, one-line help). Modules are imported lazily: `check` must not pay for paho.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("agent.commands.run", "run the agent daemon (systemd Type=notify)"),
    "replay": ("agent.commands.replay", "run monitors over recorded CAN logs and NMEA files"),
    "check": ("agent.commands.check", "validate a config, DBCs, signal map and monitors"),
    "simulate": ("agent.commands.simulate", "drive a scenario onto a CAN interface and NMEA"),
    "obd": ("agent.commands.obd", "OBD-II: scan the car's ECUs, VIN, PIDs and fault codes"),
}


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the subcommand named in ``argv`` is imported (``check`` needs no paho)."""
    # Top-level options take no value, so the first word that is not an option is the command.
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="edgemon-agent", description="edgemon vehicle agent")
    parser.add_argument("--version", action="version", version=f"edgemon-agent {__version__}")
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    _verbosity(parser, 0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
        _verbosity(sub_parser, argparse.SUPPRESS)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_execute=module.execute)
    return parser


def _verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    """``-v``/``-q`` (repeatable) on the top level and on every command: one step of log level
    each (-v: DEBUG; -q: WARNING, -qq: ERROR); ``run`` lets them override ``log_level``."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, help="more log output (repeat)"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=default, help="less log output (repeat)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
    logging.basicConfig(
        level=chosen_level(args) or logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args._execute(args)
    except EdgemonError as exc:
        if args.debug:
            raise
        print(f"edgemon-agent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
