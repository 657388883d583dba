"""HTTP → HTTP transfer throughput as a ratio of SQLite → SQLite, measured in the same run.

    python scripts/bench_http.py [--videos 20000] [--steps 4] [--repeat 1] [--keep DIR]

Builds two identical records-only worlds (scripts/world.py, same seed). On the first, times
`syncd transfer -s prod -t dev --yes --json` with both environments as SQLite files. On the
second, starts `syncd serve prod` and `syncd serve dev` (loopback, access log off) and times
the same command with both environments as `http://` URLs and a bearer token. Prints rows/s,
the ratio HTTP / SQLite (the issue aims for ≥ 0.3) and the CPU seconds of the client and of
each server, which shows where the time goes. With --repeat N, each side runs N times on
fresh targets and the best time counts. Not a test: it asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transfer import BenchFailed, run_measured, workdir  # noqa: E402
from world import World, build_world  # noqa: E402

SYNCD = Path(sys.executable).parent / "syncd"
TRANSFER = ["transfer", "-s", "prod", "-t", "dev", "--yes", "--json"]
TOKEN_VAR = "SYNCD_BENCH_TOKEN"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Timing:
    rows: int
    seconds: float
    client_cpu: float
    server_cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


# -- servers ------------------------------------------------------------------------------------

@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str

    def cpu_seconds(self) -> float:
        """utime + stime of the server process so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / TICKS


def serve(world: World, env: str, token: str, log: Path) -> Served:
    environ = {**os.environ, "SYNCD_SERVE_TOKENS": token}
    with log.open("wb") as out:
        proc = subprocess.Popen([str(SYNCD), "--config", str(world.config), "serve", env,
                                 "--port", "0", "--no-access-log"],
                                stdout=out, stderr=subprocess.STDOUT, env=environ)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchFailed(f"syncd serve {env} exited {proc.returncode}:\n{log.read_text()}")
        found = re.search(r" on (http://\S+)", log.read_text())
        if found:
            try:
                if httpx.get(found[1] + "/v1/health", timeout=5).status_code == 200:
                    return Served(proc, found[1])
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise BenchFailed(f"syncd serve {env} not ready after 60s:\n{log.read_text()}")


@contextmanager
def served(world: World, token: str) -> Iterator[dict[str, Served]]:
    servers: dict[str, Served] = {}
    try:
        for env in ("prod", "dev"):
            servers[env] = serve(world, env, token, world.root / f"serve-{env}.log")
        yield servers
    finally:
        for server in servers.values():
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(timeout=30)


def client_config(world: World, servers: dict[str, Served]) -> Path:
    text = world.config.read_text()
    for env, server in servers.items():
        text = re.sub(rf'(\[environments\.{env}\]\n)records = "[^"]*"\n',
                      rf'\1records = "{server.url}"\ntoken = "${{{TOKEN_VAR}}}"\n', text)
    path = world.root / "client.toml"
    path.write_text(text)
    return path


# -- runs ---------------------------------------------------------------------------------------

def transfer(config: Path, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, float, float]:
    """(rows created, seconds, client CPU seconds) of one real `syncd transfer`."""
    command = [str(SYNCD), "--config", str(config), *TRANSFER]
    before = os.times()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        code, out, err, seconds, _ = run_measured(command, cwd)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if code != 0:
        raise BenchFailed(f"{shlex.join(command)} exited {code}:\n{err[-2000:]}")
    report = json.loads(out)
    if report["status"] != "completed":
        raise BenchFailed(f"run ended {report['status']!r}")
    return sum(e["created"] for e in report["applied"]["entities"].values()), seconds, cpu


def fresh_target(world: World, pristine: Path) -> None:
    """Put back the world's dev.db as built, and forget earlier runs."""
    shutil.copyfile(pristine, world.dev_db)
    for path in world.root.glob("journal.db*"):
        path.unlink()


def bench_sqlite(world: World, pristine: Path, repeat: int) -> Timing:
    best: Timing | None = None
    for _ in range(repeat):
        fresh_target(world, pristine)
        rows, seconds, cpu = transfer(world.config, world.root)
        if best is None or seconds < best.seconds:
            best = Timing(rows, seconds, cpu, {})
    assert best is not None
    return best


def bench_http(world: World, pristine: Path, repeat: int) -> Timing:
    token = secrets.token_urlsafe(32)
    best: Timing | None = None
    for _ in range(repeat):
        fresh_target(world, pristine)  # before the servers open it
        with served(world, token) as servers:
            config = client_config(world, servers)
            cpu_before = {env: s.cpu_seconds() for env, s in servers.items()}
            rows, seconds, cpu = transfer(config, world.root, {TOKEN_VAR: token})
            server_cpu = {env: s.cpu_seconds() - cpu_before[env] for env, s in servers.items()}
        if best is None or seconds < best.seconds:
            best = Timing(rows, seconds, cpu, server_cpu)
    assert best is not None
    return best


def report(sqlite: Timing, http: Timing) -> None:
    print(f"\n{'method':<34} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'ratio':>6}  CPU seconds")
    print(f"{'syncd transfer, SQLite → SQLite':<34} {sqlite.rows:>9,} {sqlite.seconds:>8.2f}"
          f" {sqlite.rate:>9,.0f} {1:>6.2f}  client {sqlite.client_cpu:.1f}")
    servers = ", ".join(f"serve {env} {cpu:.1f}" for env, cpu in http.server_cpu.items())
    print(f"{'syncd transfer, HTTP → HTTP':<34} {http.rows:>9,} {http.seconds:>8.2f}"
          f" {http.rate:>9,.0f} {http.rate / sqlite.rate:>6.2f}  client {http.client_cpu:.1f}, {servers}")
    if sqlite.rows != http.rows:
        print(f"warning: row counts differ ({sqlite.rows} vs {http.rows})")
    print(f"\nHTTP → HTTP / SQLite → SQLite throughput: {http.rate / sqlite.rate:.2f} (aim: ≥ 0.30)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=4, help="steps per video")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the best counts")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="build the worlds in DIR and keep them")
    args = parser.parse_args(argv)
    print("reproduce: " + shlex.join([sys.executable, "scripts/bench_http.py", "--videos",
                                      str(args.videos), "--steps", str(args.steps),
                                      "--repeat", str(args.repeat)]), flush=True)
    try:
        with workdir(args.keep, prefix="syncd-bench-http-") as root:
            worlds = []
            for name in ("a", "b"):  # same seed, same path lengths: identical work
                world = build_world(root / name, videos=args.videos, steps_per_video=args.steps,
                                    files=False)
                pristine = world.root / "dev.pristine.db"
                shutil.copyfile(world.dev_db, pristine)
                worlds.append((world, pristine))
            rows = sum(worlds[0][0].counts.values())
            print(f"worlds: {args.videos:,} videos × {args.steps} steps → {rows:,} prod rows each",
                  flush=True)
            sqlite = bench_sqlite(*worlds[0], args.repeat)
            http = bench_http(*worlds[1], args.repeat)
            report(sqlite, http)
    except BenchFailed as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
