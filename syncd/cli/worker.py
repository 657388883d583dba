"""worker: apply the entries of runs planned with --workers, beside any number of other workers."""
from __future__ import annotations

import sys

import anyio
import click

from .. import journals
from ..config import is_postgres_url
from ..errors import InputError
from .app import STOP, cli, config_of


@cli.command()
@click.option("--once", is_flag=True, help="Exit when nothing is left to claim (else run until stopped)")
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Entries applied at once by this process")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def worker(ctx: click.Context, once: bool, concurrency: int, log_format: str) -> None:
    """Apply entries of runs planned with --workers, sharing them with other workers (Postgres journal)."""
    from ..daemon import logs
    from ..worker import Worker, lease_seconds, worker_name

    config = config_of(ctx)
    if not is_postgres_url(config.journal.url):  # refused before an SQLite journal is created
        raise InputError("syncd worker needs a shared journal: set [journal] url = "
                         "\"postgresql://USER@HOST:PORT/DB\" in syncd.toml")
    ttl = lease_seconds()
    journal = journals.journal_for(config)
    leases = getattr(journal, "leases")
    with journal:
        claims = leases(worker_name(), ttl)
        try:
            worker_ = Worker(config, claims, logs.setup(log_format), concurrency=concurrency,
                             once=once, stopping=STOP)
            anyio.run(worker_.run)
        finally:
            claims.close()
    if STOP():
        sys.exit(STOP.exit_code())
