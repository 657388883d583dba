"""Running a benchmarked command: its time, output and the peak RSS of its processes together.

syncd may run as two processes (the planner and, for a transfer applied while it is planned,
its applier process: architecture §7), so a benchmark's memory figure is the largest sum of
the resident sets of the command's process tree, sampled every 20 ms from /proc. wait4's
ru_maxrss would miss the children (and carry over the benchmark's own high-water mark).
"""
from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path


def run_measured(command: list[str], cwd: Path) -> tuple[int, str, str, float, int]:
    """Run command; (exit code, stdout, stderr, seconds, peak RSS bytes of its process tree)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err)
        peak = [0]
        sampler = threading.Thread(target=_sample, args=(child, peak), daemon=True)
        sampler.start()
        child.wait()
        seconds = time.perf_counter() - started
        sampler.join()
        out.seek(0)
        err.seek(0)
        return child.returncode, out.read().decode(), err.read().decode(), seconds, peak[0]


def _sample(child: subprocess.Popen[bytes], peak: list[int]) -> None:
    while child.poll() is None:
        peak[0] = max(peak[0], sum(_rss(pid) for pid in _tree(child.pid)))
        time.sleep(0.02)


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:  # gone meanwhile
            pass
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
