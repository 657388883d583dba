"""File checks: for each blob a planned record points at, where its copy goes and whether
the target already holds those bytes (fingerprints compared, nothing downloaded)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import anyio

from .. import blobs
from ..records import field_value
from ..schema import Entity
from ..stores.base import Row
from ..tasks import task_group
from ..transforms import BlobRewriter, is_uri
from .context import PlanContext

Verdict = Literal["copy", "existing", "conflict"]


@dataclass(frozen=True)
class FileCheck:
    src: str
    dst: str
    verdict: Verdict
    planned: blobs.Planned  # what the source held: the copy is pinned to it and verified


def blob_pairs(rewriter: BlobRewriter, rows_by_entity: Iterable[tuple[Entity, list[Row]]]) -> dict[str, str]:
    """Source URI → target URI of every blob field of these rows, each source once."""
    pairs: dict[str, str] = {}
    for entity, rows in rows_by_entity:
        for row in rows:
            for f in entity.blob_fields:
                uri = field_value(entity, row, f)
                if is_uri(uri):
                    pairs.setdefault(uri, rewriter.rewrite(uri))
    return pairs


async def check_files(ctx: PlanContext, pairs: dict[str, str]) -> list[FileCheck]:
    """Compare each source with its target, file_workers at a time. Every bucket involved
    must be reachable first: an InputError here stops planning before the plan is sealed,
    so nothing is applied."""
    await anyio.to_thread.run_sync(blobs.check_buckets, [*pairs, *pairs.values()])
    limiter = anyio.CapacityLimiter(ctx.file_workers)
    checks: dict[str, FileCheck] = {}

    async def check(src: str, dst: str) -> None:
        verdict, planned = await anyio.to_thread.run_sync(file_verdict, src, dst, limiter=limiter)
        checks[src] = FileCheck(src, dst, verdict, planned)

    async with task_group() as tg:
        for src, dst in pairs.items():
            tg.start_soon(check, src, dst)
    return [checks[src] for src in pairs]


def file_verdict(src: str, dst: str) -> tuple[Verdict, blobs.Planned]:
    """copy | existing | conflict, and what the source holds (size None: it is missing, and
    its copy will fail and be journaled). Compares fingerprints, never downloads."""
    source = blobs.retrying(lambda: blobs.stat(src))
    if source is None:
        return "copy", blobs.Planned(None)
    planned = blobs.Planned(source.size, source.crc32c, source.generation)
    target = blobs.retrying(lambda: blobs.stat(dst))
    if target is None:
        return "copy", planned
    if blobs.same(src, dst, source, target):
        return "existing", planned
    return "conflict", planned
