"""The webhook senders side by side, in one run: httpx (``HttpxSender``), aiohttp
(``AiohttpSender``) and the hand-written HTTP/1.1 sender (``Http1Sender``), each built as the
backend builds it (TLS verified against the receiver's CA, the SSRF policy allowing loopback,
one deadline per attempt, the answer cap).

- raw: POSTs of a 400-byte JSON body to the HTTPS receiver (its own process), 8 at a time, from
  this process and nothing else; requests/s and this process's CPU per request. The rounds
  interleave the senders (httpx, aiohttp, builtin, httpx, ...) so a load change on the shared
  machine hits all of them; the best round of each is kept (the one least disturbed).
- backend: ``bench_backend``'s one-event-per-webhook run (a real mosquitto, ``edgemon-backend
  run`` with the default configuration except ``[webhooks] client``), once per sender.

Not part of ``make bench`` (it takes about a minute); its figures go to
``bench/.results/senders.json`` and docs/benchmarks.md.
Usage: .venv/bin/python bench/bench_senders.py [--requests N] [--rounds N] [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_backend  # noqa: E402
from deliveries import ReceiverProcess  # noqa: E402
from harness import guard, pick, stage, write_results  # noqa: E402
from machine import machine  # noqa: E402

from backend.aiohttp_sender import AiohttpSender  # noqa: E402
from backend.egress import LOOPBACK_ALLOWED  # noqa: E402
from backend.http1 import Http1Sender  # noqa: E402
from backend.webhooks import HttpxSender, WebhookRequest, WebhookSender, tls_context  # noqa: E402

SENDERS: dict[str, Callable[..., WebhookSender]] = {
    "httpx": HttpxSender,
    "aiohttp": AiohttpSender,
    "builtin": Http1Sender,
}
BODY = b'{"monitorId":"m","attributes":[],"events":[' + b'{"v":"' + b"x" * 340 + b'"}]}'


async def raw_round(kind: str, url: str, ca_file: Path, requests: int) -> tuple[float, float]:
    """(requests/s, CPU ms per request) of one sender, 8 requests in flight."""
    sender = SENDERS[kind](verify=tls_context(ca_file), policy=LOOPBACK_ALLOWED, timeout=10.0)
    request = WebhookRequest(f"{url}/raw-{kind}", (("webhook-id", "msg_1"),), BODY)
    await sender.send(request)  # connection warm, imports done
    remaining = [requests]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            answer = await sender.send(request)
            if answer.status != 200:
                raise RuntimeError(f"{kind}: status {answer.status}")

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(8)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await sender.close()
    return requests / elapsed, cpu / requests * 1000


def raw(work: Path, args: argparse.Namespace) -> dict[str, float]:
    receiver = ReceiverProcess(work).start()
    best: dict[str, tuple[float, float]] = {}
    try:
        for _ in range(args.rounds):
            for kind in SENDERS:
                with stage(f"raw {kind}", 60):
                    rate, cpu = asyncio.run(raw_round(kind, receiver.url, receiver.ca_file,
                                                      args.requests))  # fmt: skip
                print(f"  raw {kind}: {rate:,.0f} req/s, {cpu:.3f} ms CPU/request")
                if kind not in best or rate > best[kind][0]:
                    best[kind] = (rate, cpu)
    finally:
        receiver.stop()
    figures = {}
    for kind, (rate, cpu) in best.items():
        figures[f"raw_{kind}_req_per_s"] = rate
        figures[f"raw_{kind}_cpu_ms_per_req"] = cpu
    return figures


def backend(work: Path, args: argparse.Namespace) -> dict[str, float]:
    figures = {}
    run_args = argparse.Namespace(events=args.events, batched_events=0)
    for kind in SENDERS:
        folder = work / f"backend-{kind}"
        folder.mkdir()
        found = bench_backend.measure(folder, run_args, f'client = "{kind}"\n')
        rate, cpu = found["backend_deliveries_per_s"], found["backend_cpu_ms_per_delivery"]
        print(f"  backend {kind}: {rate:,.0f} deliveries/s, {cpu:.2f} ms backend CPU/delivery")
        figures[f"backend_{kind}_deliveries_per_s"] = rate
        figures[f"backend_{kind}_cpu_ms_per_delivery"] = cpu
    return figures


def main() -> int:
    guard("bench_senders")
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=pick(3000, 50))
    parser.add_argument("--rounds", type=int, default=pick(3, 1))
    parser.add_argument("--events", type=int, default=pick(3000, 50))
    args = parser.parse_args()
    print(f"# bench_senders on {machine()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-senders-") as tmp:
        figures = raw(Path(tmp), args)
        figures |= backend(Path(tmp), args)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    write_results("senders", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
