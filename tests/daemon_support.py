"""Helpers for the daemon tests: jobs in a world's config, new prod records, a daemon process."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

import world as world_module
from conftest import SYNCD


def add_job(w: world_module.World, name: str = "staging", **fields: Any) -> None:
    """Append a [jobs.NAME] section to the world's syncd.toml (TOML values from JSON; None
    leaves the key out)."""
    lines = [f"\n[jobs.{name}]"] + [f"{k} = {json.dumps(v)}" for k, v in fields.items() if v is not None]
    with w.config.open("a") as f:
        f.write("\n".join(lines) + "\n")


def set_job_field(w: world_module.World, key: str, value: Any) -> None:
    """Change one `key = value` line of the config (the jobs' keys are unique in the tests)."""
    text = w.config.read_text().splitlines()
    changed = [f"{key} = {json.dumps(value)}" if line.startswith(f"{key} = ") else line for line in text]
    assert changed != text, key
    w.config.write_text("\n".join(changed) + "\n")


def run_statuses(w: world_module.World) -> dict[str, str]:
    """run → status from the journal's runs projection, read-only ({} before it exists)."""
    path = w.root / "journal.db"
    if not path.exists():
        return {}
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
            return dict(conn.execute("SELECT run, status FROM runs").fetchall())
    except sqlite3.OperationalError:  # tables not created yet
        return {}


def ids(db: Path, sql: str) -> list[str]:
    with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
        return [r[0] for r in conn.execute(sql)]


INTERNAL = ("SELECT id FROM videos WHERE json_extract(collection_meta, '$.data_source') = 'internal'"
            " ORDER BY created_at, id")


def poll(condition: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Wait until condition() is truthy (returned), checking every 20 ms; fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class DaemonProcess:
    """`syncd daemon` as a real process, JSON logs collected from stderr as they come."""

    def __init__(self, w: world_module.World, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(SYNCD), "--config", str(w.config), "daemon", "--log-format", "json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "SYNCD_FAILPOINT": ""})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def logs(self) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                found.append({"message": line.rstrip()})
        return found

    def messages(self, message: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs() if entry.get("message") == message]

    def url(self) -> str:
        """The status server's base URL, from its log line."""
        found = poll(lambda: self.messages("status server listening") or self.proc.poll() is not None,
                     what="the status server")
        assert isinstance(found, list), self.stderr()
        return str(found[0]["url"])

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(self.url() + path, timeout=30) as response:
            return response.status, response.read().decode()

    def get_json(self, path: str) -> Any:
        code, body = self.get(path)
        assert code == 200, body
        return json.loads(body)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def stderr(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
