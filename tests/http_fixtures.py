"""Real `syncd serve` processes on loopback, worlds whose environments sit behind them, and a
fault-injecting HTTP proxy.

    start_server(config, env)        a `syncd serve ENV --port 0` subprocess, ready when returned
    http_world(root, behind=...)     a scripts/world.py world whose prod and/or dev are served;
                                     its World.config is the client config (http:// + token)
    start_proxy(upstream, every=10)  a real proxy process in front of a server that fails one
                                     request in every N: 500 (before or after forwarding), 429
                                     with Retry-After, a stall past the client's timeout, or a
                                     dropped connection (before or after forwarding)
    start_proxy(upstream, every=0, script="videos/create#2=503*6")
                                     the same proxy failing only what its script says: here
                                     the 2nd distinct body POSTed to .../videos/create gets
                                     a 503 on its first 6 arrivals (see `Rule`)
    requests_in(log)                 every request a proxy saw: method, path, body digest, key

Run as a script, this module is the proxy: `python tests/http_fixtures.py proxy --upstream URL`.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))

import world as world_module  # noqa: E402

SYNCD = Path(sys.executable).parent / "syncd"
# Distinctive, so a grep over journals, logs and outputs cannot miss them.
TOKEN = "tok-rw-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e"
READ_TOKEN = "tok-ro-2e4c6a8f0b1d3e5c7a9f1b3d5e7c9a0f"
TOKEN_VAR = "SYNCD_TEST_TOKEN"  # what the client configs name: token = "${SYNCD_TEST_TOKEN}"
os.environ.setdefault(TOKEN_VAR, TOKEN)
READY_TIMEOUT = 60.0  # seconds: the machine may be busy with other engineers' tests
FAULTS = ("500-before", "500-after", "429", "stall", "drop-before", "drop-after")
# only by script: a 503 whose Retry-After is 0 (retried at once, so counting retries is
# fast), and a 422 (a refusal no client retries); "-after" kinds forward the request first
SCRIPTED = ("503", "503-after", "422")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (graceful), SIGKILL if it hangs; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_process(command: list[str], log: Path, env: dict[str, str] | None = None,
                  ready: str = r" on (http://\S+)") -> Server:
    """Start a server process writing to `log`; wait until it prints its URL and answers."""
    handle = log.open("wb")
    proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    handle.close()
    deadline = time.monotonic() + READY_TIMEOUT
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited {proc.returncode}:\n{log.read_text()}")
        if url is None and (found := re.search(ready, log.read_text(errors="replace"))):
            url = found[1]
        if url is not None and _healthy(url):
            return Server(proc, url, log)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{command[:4]} not ready in {READY_TIMEOUT}s:\n{log.read_text()}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(config: Path, env: str, *args: str, log: Path | None = None,
                 environ: dict[str, str] | None = None) -> Server:
    tokens = {"SYNCD_SERVE_TOKENS": TOKEN, "SYNCD_SERVE_READ_TOKENS": READ_TOKEN}
    log = log or config.parent / f"serve-{env}.log"
    return start_process([str(SYNCD), "--config", str(config), "serve", env, "--port", "0", *args],
                         log, {**tokens, **(environ or {})})


@dataclass
class HttpWorld:
    world: world_module.World  # .config is the client config
    server_config: Path  # the world's own syncd.toml (SQLite), which the servers serve
    servers: dict[str, Server] = field(default_factory=dict)
    proxies: dict[str, Server] = field(default_factory=dict)

    def stop(self) -> None:
        for process in [*self.proxies.values(), *self.servers.values()]:
            process.stop()

    def logs(self) -> str:
        return "".join(p.output() for p in [*self.servers.values(), *self.proxies.values()])


def http_world(root: Path, *, videos: int = 20, seed: int = 7, behind: Iterable[str] = ("prod", "dev"),
               serve_args: tuple[str, ...] = (), faults_every: int | None = None,
               faults_script: str = "", timeout: float | None = None,
               files: bool = True) -> HttpWorld:
    """A world with the environments in `behind` served over HTTP (optionally via faulty
    proxies: random faults with `faults_every`, scripted ones with `faults_script`)."""
    w = world_module.build_world(root, videos=videos, seed=seed, files=files)
    hw = HttpWorld(w, w.config)
    try:
        for env in behind:
            hw.servers[env] = start_server(w.config, env, *serve_args)
            if faults_every is not None or faults_script:
                hw.proxies[env] = start_proxy(hw.servers[env].url, every=faults_every or 0,
                                              log=w.root / f"proxy-{env}.log",
                                              seed=len(hw.proxies) + 1, script=faults_script)
        urls = {env: (hw.proxies.get(env) or hw.servers[env]).url for env in hw.servers}
        client = w.root / "client.toml"
        client.write_text(client_config(w.config.read_text(), urls, timeout))
        hw.world = replace(w, config=client)
    except BaseException:
        hw.stop()
        raise
    return hw


def client_config(text: str, urls: dict[str, str], timeout: float | None = None,
                  token_var: str = TOKEN_VAR) -> str:
    """The world's config with each environment in `urls` behind HTTP."""
    for env, url in urls.items():
        pattern = rf'(\[environments\.{env}\]\n)records = "sqlite:///[^"]*"\n'
        extra = f"timeout = {timeout}\n" if timeout else ""
        text, n = re.subn(pattern, rf'\1records = "{url}"\ntoken = "${{{token_var}}}"\n{extra}', text)
        assert n == 1, f"no [environments.{env}] with a sqlite records URL"
    return text


# ---------------------------------------------------------------------------- the proxy

def start_proxy(upstream: str, *, every: int, log: Path, seed: int = 1,
                stall: float = 3.0, script: str = "") -> Server:
    """`every` 0: no random faults, only the `script`'s."""
    return start_process([sys.executable, str(Path(__file__).resolve()), "proxy", "--upstream", upstream,
                          "--every", str(every), "--seed", str(seed), "--stall", str(stall),
                          "--script", script],
                         log, ready=r"proxy on (http://\S+)")


def faults_in(log: str) -> list[str]:
    """The faults a proxy injected, from its log."""
    return re.findall(r"^fault (\S+) ", log, flags=re.MULTILINE)


class Request(NamedTuple):
    method: str
    path: str
    body: str  # a digest: retries of one request carry the same body
    key: str  # the Idempotency-Key, "-" without one


def requests_in(log: str) -> list[Request]:
    """Every request a proxy saw (health checks aside), in arrival order, from its log."""
    return [Request(*found) for found in
            re.findall(r"^request (\S+) (\S+) body=(\S+) key=(\S+)$", log, flags=re.MULTILINE)]


class Rule(NamedTuple):
    """`SUFFIX#NTH=KIND*COUNT`: the NTH distinct body sent to a path ending in SUFFIX gets
    the fault KIND on its first COUNT arrivals (a retry sends the same body again)."""

    suffix: str
    nth: int
    kind: str
    count: int

    @classmethod
    def parse(cls, text: str) -> Rule:
        found = re.fullmatch(r"(\S+)#(\d+)=(\S+)\*(\d+)", text)
        if not found or found[3] not in (*FAULTS, *SCRIPTED):
            raise ValueError(f"bad fault rule {text!r}: want SUFFIX#NTH=KIND*COUNT")
        return cls(found[1], int(found[2]), found[3], int(found[4]))


class Script:
    """Faults by rule, counted per distinct body of each path."""

    def __init__(self, text: str) -> None:
        self.rules = [Rule.parse(part) for part in text.split(",") if part]
        self.bodies: dict[str, list[str]] = {}  # path → distinct bodies, in arrival order
        self.arrivals: Counter[tuple[str, str]] = Counter()

    def fault(self, path: str, body: str) -> str | None:
        seen = self.bodies.setdefault(path, [])
        if body not in seen:
            seen.append(body)
        self.arrivals[path, body] += 1
        for rule in self.rules:
            if (path.endswith(rule.suffix) and seen.index(body) + 1 == rule.nth
                    and self.arrivals[path, body] <= rule.count):
                return rule.kind
        return None


class FaultProxy:
    """ASGI app forwarding to `upstream`; in every window of `every` requests, one (at a
    seeded position) gets a fault, the kinds taking turns, so a short run meets all of them.
    With `every` 0, only the `script`'s faults. Every request is logged."""

    def __init__(self, upstream: str, every: int, seed: int, stall: float, script: str = "") -> None:
        self.upstream = upstream
        self.every = every
        self.stall = stall
        self.rng = random.Random(seed)
        self.count = 0
        self.faults = 3 * (seed - 1)  # proxies start at different kinds: a short run meets all
        self.victim = self.rng.randrange(every) if every else 0
        self.script = Script(script)
        self.client: httpx.AsyncClient | None = None

    def next_fault(self) -> str | None:
        if not self.every:
            return None
        position = self.count % self.every
        self.count += 1
        if position == self.every - 1:
            self.victim = self.rng.randrange(self.every)  # the next window's
        if position != self.victim:
            return None
        self.faults += 1
        return FAULTS[(self.faults - 1) % len(FAULTS)]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        fault = None if path.endswith("/health") else self.fault(scope, body)
        if fault:
            print(f"fault {fault} {scope['method']} {path}", flush=True)
        if fault and not fault.endswith("-after") and fault != "stall":
            await _fail(send, fault)
            return
        if fault == "stall":
            import asyncio

            await asyncio.sleep(self.stall)  # the client gives up first; the request goes on
        status, headers, content = await self.forward(scope, body)
        if fault and fault.endswith("-after"):
            await _fail(send, fault)  # the upstream did the work; its answer is lost
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def fault(self, scope: dict[str, Any], body: bytes) -> str | None:
        """Logs the request; the fault it gets, if any."""
        digest = hashlib.blake2b(body, digest_size=8).hexdigest()
        key = dict(scope["headers"]).get(b"idempotency-key", b"-").decode()
        print(f"request {scope['method']} {scope['path']} body={digest} key={key}", flush=True)
        return self.script.fault(scope["path"], digest) or self.next_fault()

    async def forward(self, scope: dict[str, Any], body: bytes) -> tuple[int, list[Any], bytes]:
        if self.client is None:
            self.client = httpx.AsyncClient(base_url=self.upstream, timeout=120)
        keep = {"authorization", "content-type", "idempotency-key"}
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.decode() in keep]
        response = await self.client.request(scope["method"], scope["path"], content=body,
                                             headers=headers)
        passed = [(k.encode(), v.encode()) for k, v in response.headers.items()
                  if k in ("content-type", "retry-after", "www-authenticate")]
        return response.status_code, passed, response.content


async def _fail(send: Any, fault: str) -> None:
    if fault.startswith("drop"):
        # A started response with a promised body that never comes: uvicorn closes the
        # connection when the app raises after the start, and the client sees it dropped.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"100")]})
        raise ConnectionAbortedError("fault injected: connection dropped")
    status, headers = {"429": (429, [(b"retry-after", b"1")]),
                       "503": (503, [(b"retry-after", b"0")]),
                       "503-after": (503, [(b"retry-after", b"0")]),
                       "422": (422, [])}.get(fault, (500, []))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body",
                "body": b'{"error":"injected","message":"fault injected by the test proxy"}'})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _proxy_main(argv: list[str]) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="http_fixtures.py proxy")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--every", type=int, default=10, help="one faulty request in every N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stall", type=float, default=3.0, help="seconds a stalled request waits")
    parser.add_argument("--script", default="", help="faults by rule: SUFFIX#NTH=KIND*COUNT,...")
    args = parser.parse_args(argv)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"proxy on http://127.0.0.1:{sock.getsockname()[1]} → {args.upstream}", flush=True)
    app = FaultProxy(args.upstream, args.every, args.seed, args.stall, args.script)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__" and sys.argv[1:2] == ["proxy"]:
    _proxy_main(sys.argv[2:])
