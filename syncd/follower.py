"""The applier process of a checkpointed plan (architecture §7).

Planning and applying are both Python work bound by the GIL: in one process they take turns
on one core. So the planning process starts this one, which applies each checkpoint the
planner seals while the planner goes on with the next, on the other core. The two share
nothing but the journal: this process reads the sealed entries there and appends their
outcomes, as `syncd resume` would. It appends ApplyStarted, never RunFinished: the planning
process ends the run once this one has exited, and applies itself whatever this one did not
reach (it was killed, or could not start).

    python -m syncd.follower RUN_ID TARGET_ENV PARENT_PID     (the config as JSON on stdin)

It stops after the entry in hand on SIGINT or SIGTERM, and when its parent is gone (a
planner killed between checkpoints leaves the rest to `syncd resume`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType
from typing import Callable

import anyio
import msgspec

from journal import Journal

from .config import Config
from .errors import SyncdError
from .runtime import start_process
from .watch import OutcomeWatch

EXIT_APPLIED = 0  # the run is sealed and every entry was applied once
EXIT_STOPPED = 3  # stopped early: a signal, the parent gone, or planning ended unsealed
EXIT_FAILED = 4  # could not go on (a store or journal error): the planning process takes over
POLL = 0.2  # seconds between two looks at the journal while waiting for the applier process


class Follower:
    """The planning process's handle on its applier process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(cls, config: Config, run_id: str, target: str) -> Follower:
        # The config travels on stdin: nothing of it (paths, token references) in argv.
        process = subprocess.Popen([sys.executable, "-m", "syncd.follower", run_id, target, str(os.getpid())],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert process.stdin is not None
        process.stdin.write(msgspec.json.encode(config))
        process.stdin.close()
        return cls(process)

    def stop(self) -> None:
        """Ask it to stop after the entry in hand, and wait until it has."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait()

    async def wait(self, journal: Journal, run_id: str,
                   on_entry: Callable[[str, int], None] = lambda entity, records: None,
                   stopping: Callable[[], bool] = lambda: False) -> bool:
        """Until it exits, reporting each entry it applies; True when it applied the whole run.
        When `stopping` turns true, it is asked to stop after the entry in hand."""
        watch = OutcomeWatch(journal, run_id, on_entry)
        asked = False
        while True:
            exited = self.process.poll() is not None
            if stopping() and not exited and not asked:
                self.process.send_signal(signal.SIGTERM)
                asked = True
            watch.look()
            if exited:
                return self.process.returncode == EXIT_APPLIED
            await anyio.sleep(POLL)


def main(argv: list[str] | None = None) -> int:
    from . import failpoints, journals
    from .adapters import load_schema, open_store
    from .applier import Applier

    failpoints.set_role("follower")
    start_process()
    run_id, target_env, parent_pid = (argv if argv is not None else sys.argv[1:])[:3]
    config = msgspec.json.decode(sys.stdin.buffer.read(), type=Config)
    # The pid it was started by, not getppid() now: that parent may be gone already.
    parent, stop = int(parent_pid), [False]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop[0] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def stopping() -> bool:
        return stop[0] or os.getppid() != parent

    async def follow() -> bool:
        journal = journals.journal_for(config)
        target = open_store(config, target_env, readonly=False)
        try:
            schema = await load_schema(config, target)
            return await Applier(journal, run_id, target, schema, stopping=stopping).follow()
        finally:
            await target.close()
            journal.close()

    try:
        return EXIT_APPLIED if anyio.run(follow) else EXIT_STOPPED
    except SyncdError:
        return EXIT_FAILED  # the planning process applies the rest and reports what fails
    except Exception as exc:  # a bug: one line, and the planning process still takes over
        print(f"syncd: applier process stopped: {exc!r}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
