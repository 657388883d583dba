"""Hostile and broken archives are bad input (issue 12, part 6): `syncd import` (and `archive
verify`) exit 2 with one line, and neither the target nor the journal changes."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Callable

import pytest

import archive_world as aw
import world as world_module
from conftest import run

Members = dict[str, bytes]


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[world_module.World, Members]:
    w = world_module.build_world(tmp_path_factory.mktemp("hostile") / "w", videos=4)
    aw.add_empty_env(w, "empty")
    out = w.root / "valid.zip"
    result = run(w, "export", "-s", "prod", "-o", str(out), "--entity", "videos", "--yes")
    assert result.code == 0, result.stderr
    with zipfile.ZipFile(out) as z:
        return w, {n: z.read(n) for n in z.namelist()}


def _listed(members: Members, name: str, data: bytes) -> None:
    """Add or replace a member and list it in the manifest with its true size and sha256."""
    members[name] = data
    manifest = json.loads(members["manifest.json"])
    manifest["members"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    members["manifest.json"] = json.dumps(manifest).encode()


def _manifest(members: Members, change: Callable[[dict], None]) -> None:
    manifest = json.loads(members["manifest.json"])
    change(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()


def _write(path: Path, members: Members, symlink: str | None = None) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            if name == symlink:
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o120777 << 16
                z.writestr(info, data)
            else:
                z.writestr(name, data)


def _tamper_byte(members: Members) -> None:
    data = bytearray(members["records/videos.ndjson"])
    i = data.index(b'"title":"') + len(b'"title":"')
    data[i] = ord("X") if data[i] != ord("X") else ord("Y")
    members["records/videos.ndjson"] = bytes(data)


def _set_version(m: dict) -> None:
    m["format_version"] = 99


def _extra_column(m: dict) -> None:
    for e in m["entities"]:
        if e["name"] == "videos":
            e["columns"].append({"name": "secret_column", "type": "TEXT"})


CASES: dict[str, Callable[[Members], str | None]] = {
    "traversal": lambda m: _listed(m, "../evil.ndjson", b"{}\n"),
    "absolute": lambda m: _listed(m, "/etc/evil", b"x"),
    "symlink": lambda m: (_listed(m, "records/link.ndjson", b"/etc/passwd"), "records/link.ndjson")[1],
    "size_differs": lambda m: _manifest(m, lambda d: d["members"]["records/videos.ndjson"].update(size=1)),
    "sha256_differs": _tamper_byte,
    "zip_bomb": lambda m: _listed(m, "records/videos.ndjson", b"0" * 60_000_000),
    "unknown_version": lambda m: _manifest(m, _set_version),
    "malformed_ndjson": lambda m: _listed(m, "records/videos.ndjson", b'{"id": "v1", "title": \n'),
    "unlisted_member": lambda m: m.__setitem__("records/extra.ndjson", b"{}\n"),
    "field_the_target_lacks": lambda m: (_manifest(m, _extra_column), _listed(
        m, "records/videos.ndjson", m["records/videos.ndjson"].replace(b'"title"', b'"secret_column":"x","title"', 1)))[0],
}


def _journal_bytes(w: world_module.World) -> tuple[str, str]:
    """The journal's head (SEQ:HASH of its last event) and its runs: any append changes them.
    (Not the file's bytes: a WAL checkpoint rewrites those without a new event.)"""
    return run(w, "journal", "head").stdout, run(w, "runs", "--json").stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archive_is_refused_with_one_line_and_nothing_written(valid, tmp_path, case):
    w, members = valid
    assert run(w, "import", "--help").code == 0  # the command exists
    members = dict(members)
    symlink = CASES[case](members)
    path = tmp_path / f"{case}.zip"
    _write(path, members, symlink if isinstance(symlink, str) else None)
    before, journal = aw.tables(w.root / "empty.db"), _journal_bytes(w)
    result = run(w, "import", str(path), "-t", "empty", "--yes")
    assert result.code == 2, (case, result.code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("syncd: error:"), (case, result.stderr)
    assert "Traceback" not in result.stderr
    assert aw.tables(w.root / "empty.db") == before
    assert _journal_bytes(w) == journal


def test_a_file_that_is_not_a_zip_is_refused(valid, tmp_path):
    w, _ = valid
    path = tmp_path / "notes.zip"
    path.write_text("this is not a zip\n")
    for args in (("import", str(path), "-t", "empty", "--yes"), ("archive", "verify", str(path)),
                 ("archive", "show", str(path))):
        result = run(w, *args)
        assert result.code == 2 and "not a zip" in result.stderr, (args, result.stderr)


def test_verify_says_ok_for_a_valid_archive_and_names_a_tampered_member(valid, tmp_path):
    w, members = valid
    good = tmp_path / "good.zip"
    _write(good, members)
    assert run(w, "archive", "verify", str(good)).code == 0
    members = dict(members)
    _tamper_byte(members)
    bad = tmp_path / "bad.zip"
    _write(bad, members)
    result = run(w, "archive", "verify", str(bad))
    assert result.code == 2 and "records/videos.ndjson" in result.stderr
