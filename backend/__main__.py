"""``edgemon-backend run -c backend.toml [--role ingest|dispatcher|api|all]``: a thin CLI.

Errors of ``backend.errors`` print as one line and exit 2; ``--debug`` shows the traceback.
SIGTERM and SIGINT stop the process cleanly (in-flight attempts finish, ingest acks what it
committed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from backend import __version__
from backend.app import ROLES, Backend
from backend.config import as_shard, load_config
from backend.errors import BackendError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgemon-backend", description="edgemon backend")
    parser.add_argument("--version", action="version", version=f"edgemon-backend {__version__}")
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run ingest, dispatcher and API")
    run.add_argument("-c", "--config", type=Path, required=True, help="backend.toml")
    run.add_argument(
        "--role",
        action="append",
        choices=[*ROLES, "all"],
        help="what this process runs (repeatable; default all)",
    )
    run.add_argument(
        "--shard",
        type=int,
        metavar="N",
        help="worker N of [mqtt] shard_count: its ingest shard and MQTT client id (client_id-N)",
    )
    check = sub.add_parser("check", help="validate a backend.toml and report every problem")
    check.add_argument("-c", "--config", type=Path, required=True)
    return parser


async def _serve(backend: Backend) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await backend.run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
        if args.command == "check":
            print(f"{args.config}: OK")
            return 0
        if args.shard is not None:
            config = as_shard(config, args.shard)
        roles = set(args.role or ["all"])
        chosen = frozenset(ROLES) if "all" in roles else frozenset(roles)
        asyncio.run(_serve(Backend(config, chosen)))
    except BackendError as exc:
        if args.debug:
            raise
        print(f"edgemon-backend: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
