"""Google Cloud Storage (`gs://bucket/key`) through the google-cloud-storage client.

One client per process (per STORAGE_EMULATOR_HOST, so tests can point at several emulators),
shared by the worker threads that run copies: the client's requests session is thread-safe
for independent requests, and its connection pool is sized for the most workers the CLI allows.

The library's own retries are switched off (`retry=None`) on every call: the applier already
retries TransientError with backoff, and two stacked retry loops would turn an unreachable
endpoint into minutes of waiting. Errors are mapped here, at the edge:

    429, 5xx, connection reset/refused, timeouts, checksum mismatch in transit → TransientError
    404 and every other refusal                                                → PermanentError
    412 on a write precondition                                                → TargetExists

Credentials: STORAGE_EMULATOR_HOST (anonymous, as the library does), else Application
Default Credentials.
"""
from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from .. import failpoints
from ..errors import ConfigError, InputError, PermanentError, TransientError
from ..retry import retrying
from .base import BlobStat, Planned
from .checksums import crc32c_of_file

POOL = 64  # HTTP connections kept per host: the most --file-workers allows
CHUNK = 8 << 20  # resumable uploads above 8 MiB go in chunks this big (bounds memory per worker)
TIMEOUT = (10, 120)  # seconds: connect, read (a rewrite of a large object answers slowly)
EMULATOR = "STORAGE_EMULATOR_HOST"

_lock = threading.Lock()
_clients: dict[str, Any] = {}
_reachable: set[tuple[str, str]] = set()  # (endpoint, bucket) found reachable


class TargetExists(PermanentError):
    """A write precondition on the target failed: it exists (or changed) after all."""


@dataclass(frozen=True)
class GcsUri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> "GcsUri":
        bucket, _, key = uri.removeprefix("gs://").partition("/")
        if not uri.startswith("gs://") or not bucket or not key:
            raise InputError(f"not a gs://BUCKET/KEY URI: {uri}")
        return cls(bucket, key)

    @staticmethod
    def parse_bucket(uri: str) -> str:
        return uri.removeprefix("gs://").split("/", 1)[0]


def client() -> Any:
    """The process's client for the current endpoint, built on first use."""
    endpoint = os.environ.get(EMULATOR, "")
    with _lock:
        if endpoint not in _clients:
            _clients[endpoint] = _build_client()
        return _clients[endpoint]


def _build_client() -> Any:
    try:
        import requests.adapters
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage
    except ImportError as exc:
        raise InputError("gs:// files need the gcs extra: pip install 'syncd[gcs]'") from exc
    try:
        built = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
    except DefaultCredentialsError as exc:
        raise InputError(
            "GCS: no credentials found; run `gcloud auth application-default login`, set "
            "GOOGLE_APPLICATION_CREDENTIALS, or STORAGE_EMULATOR_HOST for an emulator "
            f"({str(exc).splitlines()[0]})") from exc
    # requests keeps 10 connections per host by default; more workers would each open and
    # drop a connection per request.
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL)
    built._http.mount("https://", adapter)
    built._http.mount("http://", adapter)
    return built


def endpoint() -> str:
    return os.environ.get(EMULATOR) or "storage.googleapis.com"


@contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Backend errors → syncd's tree, at the edge. Entered only after client() succeeded:
    that proves the extra is installed, and these imports cannot fail."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud.storage.exceptions import DataCorruption

    try:
        yield
    except api.PreconditionFailed as exc:
        raise TargetExists(f"{what}: precondition failed") from exc
    except (api.TooManyRequests, api.ServerError, api.RetryError) as exc:
        raise TransientError(f"{what}: {_short(exc)}") from exc
    except api.NotFound as exc:
        raise PermanentError(f"{what}: not found") from exc
    except api.GoogleAPICallError as exc:
        raise PermanentError(f"{what}: {_short(exc)}") from exc
    except (requests.ConnectionError, requests.Timeout, auth.TransportError) as exc:
        raise TransientError(f"{what}: cannot reach GCS at {endpoint()}: {type(exc).__name__}") from exc
    except DataCorruption as exc:
        raise TransientError(f"{what}: checksum mismatch in transit") from exc
    except auth.GoogleAuthError as exc:
        raise PermanentError(f"{what}: credentials refused: {_short(exc)}") from exc
    except OSError as exc:  # the local side of a stream: a read or write error, disk full
        raise TransientError(f"{what}: {exc}") from exc


def _short(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    text = message.splitlines()[0] if message else type(exc).__name__
    return f"{code} {text}" if code else text


def stat_of(blob: Any) -> BlobStat:
    return BlobStat(size=int(blob.size), crc32c=blob.crc32c, md5=blob.md5_hash,
                    generation=int(blob.generation) if blob.generation is not None else None)


class GcsBlobStore:
    def check_prefix(self, uri: str) -> str:
        if not re.match(r"gs://[a-z0-9][a-z0-9._-]*(/|$)", uri):
            raise ConfigError(f"{uri!r} does not name a bucket")
        # `gs://co-prod-data` means the bucket: without the '/', the prefix would also match
        # `gs://co-prod-data-old/...`
        return uri if "/" in uri[len("gs://"):] else uri + "/"

    def check(self, uris: Iterable[str]) -> None:
        """Each bucket once per process: the planner asks again for every group."""
        for bucket in sorted({GcsUri.parse_bucket(uri) for uri in uris}):
            self.check_bucket(bucket)

    def stat(self, uri: str) -> BlobStat | None:
        where, gcs = GcsUri.parse(uri), client()
        with mapped_errors(f"stat {uri}"):
            blob = gcs.bucket(where.bucket).get_blob(where.key, retry=None, timeout=TIMEOUT)
        return None if blob is None else stat_of(blob)

    def copy(self, src: str, dst: str, planned: Planned, only_if_generation: int | None) -> BlobStat:
        """Server-side rewrite; large or cross-location objects take several calls, each
        continuing from the rewrite token of the one before."""
        source, target = GcsUri.parse(src), GcsUri.parse(dst)
        gcs = client()
        source_blob = gcs.bucket(source.bucket).blob(source.key)
        target_blob = gcs.bucket(target.bucket).blob(target.key)
        token: str | None = None
        failpoints.hit("file.before-rename")  # the copy becomes visible under dst when done
        with mapped_errors(f"copy {src} → {dst}"):
            while True:
                token, _done, _total = target_blob.rewrite(
                    source_blob, token=token, if_generation_match=only_if_generation,
                    if_source_generation_match=planned.generation, retry=None, timeout=TIMEOUT)
                if token is None:
                    break
        return verified(dst, stat_of(target_blob), planned)

    def upload(self, path: Path, dst: str, planned: Planned, only_if_generation: int | None) -> BlobStat:
        """A local file streamed up: one request up to 8 MiB, resumable chunks above. The
        library checks the crc32c GCS computed against the bytes it sent; we check it against
        the file's, read before the upload."""
        target, gcs = GcsUri.parse(dst), client()
        try:
            size, crc, fh = path.stat().st_size, crc32c_of_file(path), path.open("rb")
        except FileNotFoundError as exc:
            raise PermanentError(f"file not found: {path}") from exc
        except OSError as exc:
            raise TransientError(f"read {path}: {exc}") from exc
        blob = gcs.bucket(target.bucket).blob(target.key, chunk_size=CHUNK)
        with fh, mapped_errors(f"upload {path} → {dst}"):
            verified(str(path), BlobStat(size, crc), planned)  # the file changed after planning?
            failpoints.hit("file.before-rename")
            blob.upload_from_file(fh, size=size, if_generation_match=only_if_generation,
                                  checksum="crc32c", retry=None, timeout=TIMEOUT)
        return verified(dst, stat_of(blob), Planned(size, crc))

    def download(self, src: str, out: BinaryIO, planned: Planned) -> None:
        """Streams src into out; the library checks the bytes against GCS's crc32c as they
        arrive, and the generation pins them to what was planned."""
        source = GcsUri.parse(src)
        blob = client().bucket(source.bucket).blob(source.key)  # before mapped_errors: see there
        try:
            with mapped_errors(f"download {src}"):
                blob.download_to_file(out, if_generation_match=planned.generation,
                                      checksum="crc32c", retry=None, timeout=TIMEOUT)
        except TargetExists as exc:  # the generation precondition: another version now
            raise PermanentError(f"{src} changed after planning") from exc

    def check_bucket(self, bucket: str) -> None:
        """InputError unless the bucket exists and its objects can be listed (what a copy
        needs: objects.get/list; listing one object works where bucket metadata may not)."""
        if (endpoint(), bucket) in _reachable:
            return
        gcs = client()

        def list_one() -> None:
            with mapped_errors(f"bucket gs://{bucket}"):
                list(gcs.list_blobs(bucket, max_results=1, retry=None, timeout=TIMEOUT))

        try:
            retrying(list_one, attempts=3)
        except PermanentError as exc:
            unreachable = isinstance(exc.__cause__, TransientError)
            hint = "" if unreachable else "; check the bucket name and that these credentials may list it"
            raise InputError(f"GCS {exc}{hint}") from exc
        _reachable.add((endpoint(), bucket))


def verified(uri: str, got: BlobStat, planned: Planned) -> BlobStat:
    """The blob holds what the plan saw of its source: same size, same crc32c when known."""
    if planned.size is not None and got.size != planned.size:
        raise PermanentError(f"{uri}: size {got.size} differs from the planned {planned.size} "
                             "(the source changed after planning)")
    if planned.crc32c and got.crc32c != planned.crc32c:
        raise PermanentError(f"{uri}: crc32c {got.crc32c} differs from the planned {planned.crc32c}")
    return got
