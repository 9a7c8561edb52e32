"""One module per ``edgemon-agent`` subcommand (see ``agent.__main__.COMMANDS``)."""

from __future__ import annotations

import argparse
import logging


def chosen_level(args: argparse.Namespace) -> int | None:
    """The log level asked for on the command line (``--debug``, ``-v``, ``-q``, repeatable),
    or None when none was given (then the configuration's ``log_level``, else INFO, applies)."""
    if getattr(args, "debug", False):
        return logging.DEBUG
    shift = int(getattr(args, "verbose", 0)) - int(getattr(args, "quiet", 0))
    if shift == 0:
        return None
    return max(logging.DEBUG, min(logging.CRITICAL, logging.INFO - 10 * shift))
