"""``edgemon-agent run -c agent.toml``: the daemon.

Runs in the foreground (systemd ``Type=notify``): logs go to stdout, which journald collects
(without our own timestamps when ``$JOURNAL_STREAM`` says journald is listening). Errors before
the configuration is loaded stay one line on stderr.
SIGTERM and SIGINT stop it cleanly (outbox flushed as far as the broker allows, status offline);
SIGHUP reloads the local monitors file.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from agent.commands import chosen_level


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, required=True, help="agent configuration (TOML)"
    )


def _configure_logging(level: str, chosen: int | None) -> None:
    """``chosen`` (``--debug``, ``-v``, ``-q``) wins over the configuration's ``log_level``."""
    root = logging.getLogger()
    root.setLevel(chosen if chosen is not None else getattr(logging, level.upper(), logging.INFO))
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(sys.stdout)  # the daemon logs to stdout; journald collects it
        if journald:  # journald adds its own timestamps
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("can").setLevel(max(root.level, logging.INFO))


def execute(args: argparse.Namespace) -> int:
    from agent.app import Agent  # noqa: PLC0415 - keeps `edgemon-agent --help` light
    from agent.config import load_config  # noqa: PLC0415

    config = load_config(args.config)
    _configure_logging(config.log_level, chosen_level(args))
    agent = Agent(config)

    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %s received", signal.Signals(signum).name)
        agent.request_stop()

    def reload(_signum: int, _frame: FrameType | None) -> None:
        agent.request_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    return agent.run()
