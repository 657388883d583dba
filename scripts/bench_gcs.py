"""Benchmark: ~2,000 small blobs copied bucket → bucket, syncd against a plain loop.

    python scripts/bench_gcs.py [--videos 250] [--rtt-ms 0,30] [--file-workers 16,32]

For each round-trip time it starts a fresh GCS emulator (tests/gcs_emulator.py) and builds a
world whose records point at gs://co-prod-data/... (scripts/world.py --gcs-bucket). Then, in
the same process and with the same google-cloud-storage client:

  loop   a plain sequential `bucket.copy_blob(...)` over every object, into co-loop-data;
  syncd  `syncd transfer --copy-files --target-bucket co-dev-wN` (plan, journal, check
         both sides of every blob, copy, verify, create every record), for each worker count.

An emulator on loopback answers in well under a millisecond, where real GCS takes tens of
milliseconds per request; with --rtt-ms > 0 a TCP proxy in its own process delays every byte
by half the RTT each way, as a network would. Both sides pay the same delay per request.
It prints blobs/s for each and the ratio; nothing here is a pass/fail threshold.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts"), str(ROOT)]

import world as world_module  # noqa: E402
from gcs_emulator import Emulator, free_port  # noqa: E402


# -- a TCP proxy that adds latency (run as its own process: its CPU must not share our GIL) -

async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Forward bytes, each chunk delivered `delay` seconds after it arrived, in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(deliver())
    try:
        while data := await reader.read(1 << 16):
            queue.put_nowait((time.monotonic() + delay, data))
    finally:
        queue.put_nowait((0.0, b""))
        await task


async def _serve_delay(listen: int, upstream: int, delay: float) -> None:
    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(_pump(client_r, up_w, delay), _pump(up_r, client_w, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(connection, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


class DelayProxy:
    def __init__(self, upstream_port: int, rtt_ms: float) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-delay", str(self.port), str(upstream_port),
             str(rtt_ms / 2000)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("delay proxy did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


# -- the two contenders ---------------------------------------------------------------------

def plain_loop(names: list[str]) -> float:
    """What a script would do: one copy_blob after the other, with syncd's own client."""
    from syncd.blobs import gcs

    client = gcs.client()
    source, target = client.bucket("co-prod-data"), client.create_bucket("co-loop-data")
    started = time.perf_counter()
    for name in names:
        source.copy_blob(source.blob(name), target, name)
    return time.perf_counter() - started


def syncd_transfer(world: world_module.World, workers: int, bucket: str) -> tuple[float, dict]:
    from click.testing import CliRunner

    from syncd.cli import cli

    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["--config", str(world.config), "transfer", "-s", "prod",
                                      "-t", "dev", "--copy-files", "--yes", "--json",
                                      "--file-workers", str(workers), "--target-bucket", bucket])
    seconds = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"syncd failed ({result.exit_code}): {result.stderr[-2000:]}")
    return seconds, json.loads(result.stdout)


def one_round(root: Path, videos: int, rtt_ms: float, workers: list[int]) -> None:
    """One emulator, one RTT: the loop once, then syncd once per worker count (each into a
    fresh world and bucket, so every run copies everything)."""
    emulator = Emulator(root / "gcs-data").start()
    os.environ.update(emulator.env())
    worlds = {w: world_module.build_world(root / f"world-{w}", videos=videos,
                                          gcs_bucket="co-prod-data") for w in workers}
    for w in workers:
        emulator.create_bucket(f"co-dev-w{w}")
    names = sorted(emulator.objects("co-prod-data"))
    proxy = DelayProxy(emulator.port, rtt_ms) if rtt_ms else None
    if proxy:
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{proxy.port}"
    try:
        loop_s = plain_loop(names)
        print(f"rtt {rtt_ms:>4.0f} ms | {len(names)} blobs | plain copy_blob loop {loop_s:7.2f} s "
              f"({len(names) / loop_s:6.1f} blobs/s)", flush=True)
        for w in workers:
            syncd_s, out = syncd_transfer(worlds[w], w, f"co-dev-w{w}")
            copied = out["applied"]["files"]["copied"]
            assert copied == len(names), (copied, len(names))
            rows = sum(c["created"] for c in out["applied"]["entities"].values())
            print(f"rtt {rtt_ms:>4.0f} ms | syncd --file-workers {w:<3} {syncd_s:7.2f} s "
                  f"({len(names) / syncd_s:6.1f} blobs/s, and {rows} rows) | "
                  f"syncd / loop = {loop_s / syncd_s:5.2f}x", flush=True)
    finally:
        if proxy:
            proxy.stop()
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=250, help="about 8 blobs per video")
    parser.add_argument("--rtt-ms", default="0,30", help="comma-separated round-trip times")
    parser.add_argument("--file-workers", default="16,32", help="comma-separated worker counts")
    parser.add_argument("--serve-delay", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_delay:
        listen, upstream, delay = args.serve_delay
        asyncio.run(_serve_delay(int(listen), int(upstream), float(delay)))
        return 0
    workers = [int(x) for x in args.file_workers.split(",")]
    print(f"bench_gcs: emulator {Emulator(Path('.')).kind}, {os.cpu_count()} cores", flush=True)
    for rtt in (float(x) for x in args.rtt_ms.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-gcs-") as tmp:
            one_round(Path(tmp), args.videos, rtt, workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
