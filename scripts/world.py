"""A grace-like prod/dev world for syncd's demo, benchmarks and tests.

    python scripts/world.py DIR [--videos N] [--steps K] [--seed S] [--no-files] [--force]

builds, under DIR:

    syncd.toml     prod → dev config (architecture §5), journal at DIR/journal.db
    prod.db        devices, locations, vendors, collectors, videos and their children
    dev.db         same schema; only a few records that prod also knows (see below)
    prod_files/    one small real file per blob URI in prod (videos/*.mp4, steps/*.json|*.log)
    dev_files/     empty: where `--copy-files` puts copies

With --gcs-bucket B (e.g. co-prod-data) the blob URIs are gs://B/videos/... and gs://B/steps/...
instead, and the same objects are uploaded to bucket B (created if missing) through
google-cloud-storage, which honours STORAGE_EMULATOR_HOST; prod_files/ then stays empty.

Dev holds about half of prod's devices under OTHER ids with the same device_no, one location and
one vendor with prod's ids, and one collector with a prod collector's name but another id, so a
transfer must match by natural key and remap references. Everything is deterministic from the seed
(content and ids; blob URIs contain the absolute root, so compare worlds built at the same path).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

SCHEMA = """
CREATE TABLE devices (
    id TEXT PRIMARY KEY, device_no TEXT NOT NULL UNIQUE, model TEXT, registered_at TEXT);
CREATE TABLE locations (id TEXT PRIMARY KEY, name TEXT NOT NULL, country TEXT);
CREATE TABLE vendors (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE collectors (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL DEFAULT 'worker');
CREATE TABLE videos (
    id TEXT PRIMARY KEY, title TEXT,
    location_id TEXT REFERENCES locations(id), vendor_id TEXT REFERENCES vendors(id),
    collection_meta JSON, storage_meta JSON, duration_s REAL, created_at TEXT, updated_at TEXT);
CREATE TABLE annotation_runs (
    id TEXT PRIMARY KEY, video_id TEXT NOT NULL REFERENCES videos(id),
    kind TEXT, status TEXT, created_at TEXT);
CREATE TABLE segmentations (
    id TEXT PRIMARY KEY, annotation_run_id TEXT NOT NULL REFERENCES annotation_runs(id),
    label TEXT, mask JSON, created_at TEXT);
CREATE TABLE video_steps (
    id TEXT PRIMARY KEY, video_id TEXT NOT NULL REFERENCES videos(id),
    step TEXT, status TEXT, result_ref TEXT, debug_ref TEXT, created_at TEXT);
"""
# Created after the bulk insert: cheaper than maintaining them row by row.
INDEXES = """
CREATE INDEX idx_video_steps_video_id ON video_steps(video_id);
CREATE INDEX idx_annotation_runs_video_id ON annotation_runs(video_id);
CREATE INDEX idx_segmentations_annotation_run_id ON segmentations(annotation_run_id);
"""
TABLES = ("devices", "locations", "vendors", "collectors",
          "videos", "annotation_runs", "segmentations", "video_steps")

LOCATIONS = [("Berlin", "DE"), ("Lyon", "FR"), ("Osaka", "JP"), ("Austin", "US"), ("Porto", "PT")]
VENDORS = ["Acme Optics", "Northwind Capture", "Globex Imaging"]
MODELS = ["GX-100", "GX-200", "Orbit 3", "Orbit 4 Pro"]
STEP_NAMES = ["ingest", "transcode", "detect", "segment", "qc", "publish"]
STEP_STATUSES = ["done", "done", "done", "failed", "pending"]
RUN_KINDS = ["auto", "qc", "manual"]
RUN_STATUSES = ["done", "done", "running", "failed"]
LABELS = ["person", "vehicle", "road", "sky", "building"]
EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
YEAR_S = 365 * 24 * 3600
CHUNK_VIDEOS = 5000          # videos per transaction while generating
MAX_LISTED_VIDEOS = 1000     # World.video_ids is filled only up to this many videos


@dataclass
class World:
    root: Path
    config: Path
    prod_db: Path
    dev_db: Path
    prod_files: Path
    dev_files: Path
    video_ids: list[str] | None = None          # sorted; None when videos > MAX_LISTED_VIDEOS
    shared_device_nos: list[str] = field(default_factory=list)   # in dev under other ids
    device_remap: dict[str, str] = field(default_factory=dict)   # prod device id → dev id
    shared_location_id: str = ""                # same id in prod and dev
    shared_vendor_id: str = ""                  # same id in prod and dev
    shared_collector_name: str = ""             # in dev under another id
    collector_remap: dict[str, str] = field(default_factory=dict)  # prod collector id → dev id
    counts: dict[str, int] = field(default_factory=dict)         # prod rows per table
    gcs_bucket: str | None = None               # blobs live in this bucket, not prod_files/

    @classmethod
    def at(cls, root: Path) -> World:
        root = root.resolve()
        return cls(root=root, config=root / "syncd.toml", prod_db=root / "prod.db",
                   dev_db=root / "dev.db", prod_files=root / "prod_files",
                   dev_files=root / "dev_files")

    def paths(self) -> list[Path]:
        """Everything build_world creates (the journal is syncd's)."""
        return [self.config, self.prod_db, self.dev_db, self.prod_files, self.dev_files]


def build_world(root: Path, videos: int = 20, steps_per_video: int = 4, seed: int = 7,
                files: bool = True, gcs_bucket: str | None = None) -> World:
    world = World.at(Path(root))
    world.gcs_bucket = gcs_bucket
    existing = [p for p in world.paths() if p.exists()]
    if existing:
        raise FileExistsError(f"world already exists: {existing[0]} (use a fresh directory)")
    world.root.mkdir(parents=True, exist_ok=True)
    world.prod_files.mkdir()
    world.dev_files.mkdir()
    rng = random.Random(seed)
    parents = _parents(rng, videos)
    with _bulk_connection(world.prod_db) as db:
        _insert_parents(db, parents)
        world.counts = _insert_videos(db, rng, parents, world, videos, steps_per_video, files)
        world.counts.update({t: len(parents[t]) for t in ("devices", "locations", "vendors",
                                                          "collectors")})
    _build_dev(world, parents, random.Random(f"dev-{seed}"))
    if videos <= MAX_LISTED_VIDEOS:
        world.video_ids = _sorted_ids(world.prod_db, "videos")
    world.config.write_text(config_toml(world))
    return world


# -- prod ---------------------------------------------------------------------------------------

def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ts(seconds: float) -> str:
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parents(rng: random.Random, videos: int) -> dict[str, list[tuple]]:
    n_devices = max(5, videos // 50)
    n_collectors = max(3, videos * 3 // 100)
    devices = [(new_id(rng), f"DEV-{i:06d}", rng.choice(MODELS), _ts(rng.randrange(YEAR_S // 4)))
               for i in range(n_devices)]
    locations = [(new_id(rng), name, country) for name, country in LOCATIONS]
    vendors = [(new_id(rng), name) for name in VENDORS]
    collectors = [(new_id(rng), f"collector-{i // 100 + 1:02d}#{i:04d}", "worker")
                  for i in range(n_collectors)]
    return {"devices": devices, "locations": locations, "vendors": vendors,
            "collectors": collectors}


def _insert_parents(db: sqlite3.Connection, parents: dict[str, list[tuple]]) -> None:
    for table, rows in parents.items():
        _insert(db, table, rows)
    db.commit()


def _insert(db: sqlite3.Connection, table: str, rows: list[tuple]) -> None:
    if rows:
        marks = ",".join("?" * len(rows[0]))
        db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def _insert_videos(db: sqlite3.Connection, rng: random.Random, parents: dict[str, list[tuple]],
                   world: World, videos: int, steps_per_video: int,
                   files: bool) -> dict[str, int]:
    counts = dict.fromkeys(("videos", "annotation_runs", "segmentations", "video_steps"), 0)
    for start in range(0, videos, CHUNK_VIDEOS):
        n = min(CHUNK_VIDEOS, videos - start)
        chunk = _video_chunk(rng, parents, blob_root(world), start, n, videos, steps_per_video)
        for table, rows in chunk.items():
            _insert(db, table, rows)
            counts[table] += len(rows)
        db.commit()
        if files:
            _write_blobs(world, chunk)
    db.executescript(INDEXES)
    return counts


def _video_chunk(rng: random.Random, parents: dict[str, list[tuple]], files_uri: str,
                 start: int, n: int, total: int, steps_per_video: int) -> dict[str, list[tuple]]:
    device_ids = [d[0] for d in parents["devices"]]
    collector_ids = [c[0] for c in parents["collectors"]]
    location_ids = [loc[0] for loc in parents["locations"]]
    location_names = [loc[1] for loc in parents["locations"]]
    vendor_ids = [v[0] for v in parents["vendors"]]
    rows: dict[str, list[tuple]] = {"videos": [], "annotation_runs": [], "segmentations": [],
                                    "video_steps": []}
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    step_names = [STEP_NAMES[k] if k < len(STEP_NAMES) else f"step_{k}"
                  for k in range(steps_per_video)]
    for i in range(start, start + n):
        vid = new_id(rng)
        at = i * YEAR_S // total + rng.randrange(3600)
        created, updated = _ts(at), _ts(at + rng.randrange(1, 7 * 24 * 3600))
        loc = rng.randrange(len(location_ids))
        collection = {"device_id": rng.choice(device_ids), "collector_id": rng.choice(collector_ids),
                      "data_source": "internal" if rng.random() < 0.75 else "partner"}
        storage = {"gcs": f"{files_uri}/videos/{vid}.mp4"}
        rows["videos"].append((
            vid, f"{location_names[loc]} clip {i:06d}", location_ids[loc], rng.choice(vendor_ids),
            dumps(collection), dumps(storage), round(rng.uniform(5.0, 600.0), 2), created, updated))
        run_id = new_id(rng)
        run_at = _ts(at + 600)
        rows["annotation_runs"].append(
            (run_id, vid, rng.choice(RUN_KINDS), rng.choice(RUN_STATUSES), run_at))
        for _ in range(2):
            mask = {"format": "polygon",
                    "points": [[rng.randrange(1920), rng.randrange(1080)] for _ in range(4)]}
            rows["segmentations"].append(
                (new_id(rng), run_id, rng.choice(LABELS), dumps(mask), run_at))
        for k, step in enumerate(step_names):
            sid = new_id(rng)
            debug = None if rng.random() < 0.25 else f"{files_uri}/steps/{sid}.log"
            rows["video_steps"].append((sid, vid, step, rng.choice(STEP_STATUSES),
                                        f"{files_uri}/steps/{sid}.json", debug,
                                        _ts(at + 60 * (k + 1))))
    return rows


def add_videos(world: World, n: int, seed: int) -> None:
    """Insert n videos (with their children and files) into prod, created after every
    video already there; deterministic from the seed."""
    with closing(sqlite3.connect(world.prod_db, timeout=30)) as db, db:  # one transaction
        parents = {table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
                   for table in ("devices", "locations", "vendors", "collectors")}
        start = db.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
        total = world.counts["videos"]  # created_at grows with the index: past the end of the year
        chunk = _video_chunk(random.Random(seed), parents, blob_root(world), start, n, total, 4)
        _write_blobs(world, chunk)  # files first: a record never points at nothing
        for table, rows in chunk.items():
            _insert(db, table, rows)


# -- files --------------------------------------------------------------------------------------

def blob_root(world: World) -> str:
    """What every prod blob URI starts with (then /videos/... or /steps/...)."""
    return f"gs://{world.gcs_bucket}" if world.gcs_bucket else world.prod_files.as_uri()


def _write_blobs(world: World, chunk: dict[str, list[tuple]]) -> None:
    if world.gcs_bucket:
        _upload_blobs(world.gcs_bucket, _chunk_blobs(chunk))
        return
    (world.prod_files / "videos").mkdir(exist_ok=True)
    (world.prod_files / "steps").mkdir(exist_ok=True)
    for name, content in _chunk_blobs(chunk):
        (world.prod_files / name).write_bytes(content)


def _chunk_blobs(chunk: dict[str, list[tuple]]) -> Iterator[tuple[str, bytes]]:
    """(path under the blob root, bytes) of every blob the chunk's records point at."""
    for vid, *_ in chunk["videos"]:
        yield f"videos/{vid}.mp4", blob_content(vid, "mp4")
    for sid, _vid, _step, _status, _result, debug, _at in chunk["video_steps"]:
        yield f"steps/{sid}.json", blob_content(sid, "json")
        if debug is not None:
            yield f"steps/{sid}.log", blob_content(sid, "log")


def _upload_blobs(bucket_name: str, blobs: Iterable[tuple[str, bytes]]) -> None:
    """Upload to GCS (or the emulator STORAGE_EMULATOR_HOST names), 16 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import requests.adapters
    from google.cloud import storage

    client = storage.Client()
    client._http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))
    client._http.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=16))
    bucket = client.lookup_bucket(bucket_name) or client.create_bucket(bucket_name)

    def upload(item: tuple[str, bytes]) -> None:
        bucket.blob(item[0]).upload_from_string(item[1], content_type="application/octet-stream")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(upload, blobs))


def blob_content(key: str, kind: str) -> bytes:
    """A few hundred bytes to a few KB, a pure function of (key, kind)."""
    digest = hashlib.sha256(f"{kind}:{key}".encode()).digest()
    size = 200 + int.from_bytes(digest[:2], "big") % 3900
    if kind == "mp4":
        head = b"\x00\x00\x00\x18ftypmp42" + key.encode()
    elif kind == "json":
        head = json.dumps({"step_id": key, "score": digest[2] / 255}).encode() + b"\n"
    else:
        head = f"debug log for step {key}\n".encode()
    body = (digest.hex().encode() + b"\n") * (size // 65 + 1)
    return (head + body)[:max(size, len(head))]


# -- dev ----------------------------------------------------------------------------------------

def _build_dev(world: World, parents: dict[str, list[tuple]], rng: random.Random) -> None:
    shared_devices = parents["devices"][::2]
    dev_devices = [(new_id(rng), no, model, _ts(YEAR_S // 4 + rng.randrange(YEAR_S // 4)))
                   for _id, no, model, _at in shared_devices]
    prod_collector = parents["collectors"][0]
    dev_collector = (new_id(rng), prod_collector[1], "worker")
    with _bulk_connection(world.dev_db) as db:
        _insert(db, "devices", dev_devices)
        _insert(db, "locations", parents["locations"][:1])
        _insert(db, "vendors", parents["vendors"][:1])
        _insert(db, "collectors", [dev_collector])
        db.executescript(INDEXES)
        db.commit()
    world.shared_device_nos = sorted(d[1] for d in shared_devices)
    world.device_remap = {p[0]: d[0] for p, d in zip(shared_devices, dev_devices)}
    world.shared_location_id = parents["locations"][0][0]
    world.shared_vendor_id = parents["vendors"][0][0]
    world.shared_collector_name = prod_collector[1]
    world.collector_remap = {prod_collector[0]: dev_collector[0]}


# -- config -------------------------------------------------------------------------------------

def config_toml(world: World) -> str:
    q = json.dumps  # a JSON string of a path is a valid TOML basic string
    prod_uri, dev_uri = world.prod_files.as_uri() + "/", world.dev_files.as_uri() + "/"
    return f"""\
[journal]
url = "sqlite:///journal.db"

[environments.prod]
records = "sqlite:///prod.db"

[environments.dev]
records = "sqlite:///dev.db"
blob_map = {{ {q(prod_uri)} = {q(dev_uri)} }}

[entities.devices]
natural_key = ["device_no"]

[entities.collectors]
natural_key = ["name"]

[entities.videos]
references = {{ "collection_meta.device_id" = "devices", "collection_meta.collector_id" = "collectors" }}
blob_fields = ["storage_meta.gcs"]
children = ["annotation_runs", "segmentations", "video_steps"]
compare_ignore = ["created_at", "updated_at"]

[entities.video_steps]
blob_fields = ["result_ref", "debug_ref"]
"""


# -- helpers for tests --------------------------------------------------------------------------

class _bulk_connection:
    """A connection tuned for one-shot generation; closing it checkpoints the WAL."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(SCHEMA)
        return self.db

    def __exit__(self, *exc: object) -> None:
        # Back to a rollback journal: the finished file stands alone (copyable, no -wal/-shm).
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.close()


def _sorted_ids(db_path: Path, table: str) -> list[str]:
    with _readonly(db_path) as db:
        return [r[0] for r in db.execute(f"SELECT id FROM {table} ORDER BY id")]


class _readonly:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.db = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True)
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def snapshot(db_path: Path, root: Path | None = None) -> dict[str, list[tuple]]:
    """Every table's rows, sorted by primary key (by all columns when it has none).

    With root, its file URI prefix in text values becomes "file://<root>", so targets of worlds
    built in different folders compare equal.
    """
    prefix = Path(root).resolve().as_uri() if root is not None else None
    with _readonly(db_path) as db:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name")]
        out = {}
        for table in tables:
            info = db.execute(f'PRAGMA table_info("{table}")').fetchall()
            pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]] or [r[1] for r in info]
            order = ", ".join(f'"{c}"' for c in pk)
            rows = db.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
            out[table] = rows if prefix is None else [_relocate(r, prefix) for r in rows]
        return out


def _relocate(row: tuple, prefix: str) -> tuple:
    return tuple(v.replace(prefix, "file://<root>") if isinstance(v, str) else v for v in row)


def file_tree(directory: Path) -> dict[str, str]:
    """Relative POSIX path → sha256 hex of every file under directory."""
    directory = Path(directory)
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def blob_uris(db_path: Path) -> Iterator[str]:
    """Every blob URI in a world database (videos.storage_meta.gcs, step refs)."""
    with _readonly(db_path) as db:
        yield from (r[0] for r in db.execute(
            "SELECT json_extract(storage_meta, '$.gcs') FROM videos"
            " UNION ALL SELECT result_ref FROM video_steps"
            " UNION ALL SELECT debug_ref FROM video_steps") if r[0] is not None)


# -- CLI ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4, help="steps per video")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-files", dest="files", action="store_false",
                        help="records only (blob URIs point at files that do not exist)")
    parser.add_argument("--gcs-bucket", metavar="BUCKET",
                        help="blob URIs gs://BUCKET/...; objects uploaded there "
                             "(STORAGE_EMULATOR_HOST honoured)")
    parser.add_argument("--force", action="store_true",
                        help="remove a world already in DIR first (its files only)")
    args = parser.parse_args(argv)
    if args.force:
        remove_world(args.dir)
    started = time.perf_counter()
    try:
        world = build_world(args.dir, args.videos, args.steps, args.seed, args.files, args.gcs_bucket)
    except FileExistsError as exc:
        print(f"error: {exc}; pass --force to replace it", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    rows = sum(world.counts.values())
    print(f"world in {world.root}: {rows} prod rows "
          + ", ".join(f"{t}={n}" for t, n in world.counts.items())
          + f" in {seconds:.2f}s ({rows / seconds:,.0f} rows/s)")
    print(f"dev: {len(world.shared_device_nos)} devices by device_no, 1 location, 1 vendor,"
          f" collector {world.shared_collector_name!r}; config {world.config}")
    return 0


def remove_world(root: Path) -> None:
    """Remove what build_world (and a syncd run on it) created under root, nothing else."""
    world = World.at(Path(root))
    for path in [*world.paths(), world.root / "journal.db", world.root / ".syncd"]:
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


if __name__ == "__main__":
    sys.exit(main())
