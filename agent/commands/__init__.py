"""One module per ``edgemon-agent`` subcommand (see ``agent.__main__.COMMANDS``).

Exit codes, the same for every command (docs/cli.md):
0 success; 1 the inputs were read but judged wrong (``check`` found problems, ``replay`` was
given an invalid monitor); 2 unusable arguments, configuration, DBC, signal map or files (as
argparse does for a bad option); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def chosen_level(args: argparse.Namespace) -> int | None:
    """The log level asked for on the command line (``--debug``, ``-v``, ``-q``, repeatable),
    or None when none was given (then the configuration's ``log_level``, else INFO, applies)."""
    if getattr(args, "debug", False):
        return logging.DEBUG
    shift = int(getattr(args, "verbose", 0)) - int(getattr(args, "quiet", 0))
    if shift == 0:
        return None
    return max(logging.DEBUG, min(logging.CRITICAL, logging.INFO - 10 * shift))
