"""Transforms applied to records on their way to the target.

- clear: set fields (or dot paths) to null (`--clear FIELD`);
- remap: references to records matched by natural key point at the target's id;
- rewrite: blob URIs move to the target's location (`blob_map`, bucket derivation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import InputError
from .records import field_value, with_fields
from .schema import Entity, FieldPath
from .stores.base import Row


@dataclass(frozen=True)
class BlobRewriter:
    """Maps a source URI to where its copy lives in the target environment."""

    target_env: str
    source_env: str
    blob_map: Mapping[str, str]
    target_bucket: str | None = None

    def rewrite(self, uri: str) -> str:
        # An explicit --target-bucket wins over config for every gs:// URI (issue 4):
        # the person at the keyboard knows where this run's copies should go.
        if self.target_bucket and uri.startswith("gs://"):
            return f"gs://{self.target_bucket}/{uri[len('gs://'):].partition('/')[2]}"
        for prefix in sorted(self.blob_map, key=len, reverse=True):
            if uri.startswith(prefix):
                return self.blob_map[prefix] + uri[len(prefix):]
        if uri.startswith("gs://"):
            return self._gcs(uri)
        raise InputError(
            f"no blob_map entry in environments.{self.target_env} for {uri}: "
            "add one that says where its copy goes")

    def _gcs(self, uri: str) -> str:
        bucket, _, key = uri[len("gs://"):].partition("/")
        if self.source_env in bucket:
            return f"gs://{bucket.replace(self.source_env, self.target_env)}/{key}"
        raise InputError(
            f"cannot derive a target bucket for {uri}: bucket name does not contain "
            f"'{self.source_env}'; use --target-bucket or blob_map")


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and "://" in value


@dataclass
class Transformer:
    """Everything that changes a row between source and target, for one run."""

    clear: tuple[FieldPath, ...] = ()
    clear_entity: str | None = None
    rewriter: BlobRewriter | None = None
    remaps: dict[str, dict[Any, Any]] = field(default_factory=dict)  # entity → source key → target key

    def remap(self, entity: str, source_key: Any, target_key: Any) -> None:
        self.remaps.setdefault(entity, {})[source_key] = target_key

    def apply(self, entity: Entity, row: Row) -> Row:
        changes: dict[FieldPath, Any] = {}
        if entity.name == self.clear_entity:
            for f in self.clear:
                if field_value(entity, row, f) is not None:
                    changes[f] = None
        for ref in entity.references:
            table = self.remaps.get(ref.target)
            if table:
                value = field_value(entity, row, ref.field)
                if value in table and table[value] != value:
                    changes[ref.field] = table[value]
        if self.rewriter:
            for f in entity.blob_fields:
                if f in changes:
                    continue
                uri = field_value(entity, row, f)
                if is_uri(uri):
                    changes[f] = self.rewriter.rewrite(uri)
        return with_fields(entity, row, changes) if changes else row

    def touches(self, entity: Entity) -> bool:
        """Whether apply() can change rows of this entity (the fast path skips it)."""
        return bool(
            entity.name == self.clear_entity and self.clear
            or any(self.remaps.get(r.target) for r in entity.references)
            or self.rewriter and entity.blob_fields)
