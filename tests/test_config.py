"""syncd.toml loading: real files in tmp_path, errors naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import Config, find_config_path, load_config, sqlite_path
from syncd.errors import ConfigError

FULL = """
[journal]
url = "sqlite:///.syncd/journal.db"

[environments.prod]
records = "sqlite:///data/prod.db"
[environments.dev]
records = "sqlite:///data/dev.db"
blob_map = { "file:///srv/prod-files/" = "file:///srv/dev-files/", "gs://co-prod-data/" = "gs://co-dev-data/" }

[entities.devices]
natural_key = ["device_no"]
[entities.collectors]
natural_key = ["name"]
[entities.videos]
references = { "collection_meta.device_id" = "devices", "collection_meta.collector_id" = "collectors" }
blob_fields = ["storage_meta.gcs"]
children = ["annotation_runs", "segmentations", "video_steps"]
compare_ignore = ["created_at", "updated_at"]
[entities.video_steps]
blob_fields = ["result_ref", "debug_ref"]
"""


def write(folder: Path, text: str, name: str = "syncd.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str) -> Config:
    return load_config(str(write(tmp_path, text)))


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_full_example_parses(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL)
    assert config.base_dir == str(tmp_path)
    assert config.journal.url == f"sqlite:///{tmp_path}/.syncd/journal.db"
    assert config.environment("prod").records == f"sqlite:///{tmp_path}/data/prod.db"
    dev = config.environment("dev")
    assert dev.blob_map == {"file:///srv/prod-files/": "file:///srv/dev-files/",
                            "gs://co-prod-data/": "gs://co-dev-data/"}
    videos = config.entities["videos"]
    assert videos.references["collection_meta.device_id"] == "devices"
    assert videos.children == ["annotation_runs", "segmentations", "video_steps"]
    assert videos.compare_ignore == ["created_at", "updated_at"]
    assert config.entities["devices"].natural_key == ["device_no"]
    assert config.entities["video_steps"].blob_fields == ["result_ref", "debug_ref"]
    assert config.entities["devices"].children == []


def test_journal_defaults_when_omitted(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[environments.a]\nrecords = "sqlite:///a.db"\n')
    assert config.journal.url == f"sqlite:///{tmp_path}/.syncd/journal.db"
    assert config.entities == {}


def test_unknown_key_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[environments.prod]\nrecordz = "sqlite:///p.db"\n')
    assert message == f"{tmp_path}/syncd.toml: unknown key 'recordz' in environments.prod"


def test_unknown_keys_at_every_level(tmp_path: Path) -> None:
    assert "unknown key 'jornal'" in error_of(tmp_path, '[jornal]\nurl = "x"\n')
    assert "unknown key 'base_dir'" in error_of(tmp_path, 'base_dir = "/"\n')
    assert "unknown key 'natural_keys' in entities.devices" in error_of(
        tmp_path, '[entities.devices]\nnatural_keys = ["a"]\n')
    assert "unknown key 'path' in journal" in error_of(tmp_path, '[journal]\npath = "x"\n')


def test_wrong_type_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[environments.prod]\nrecords = 3\n")
    assert message.endswith("syncd.toml: environments.prod.records: expected a string, got an integer")
    message = error_of(tmp_path, '[entities.devices]\nnatural_key = "device_no"\n')
    assert message.endswith("entities.devices.natural_key: expected an array, got a string")
    message = error_of(tmp_path, '[entities.devices]\nnatural_key = ["a", 1]\n')
    assert message.endswith("entities.devices.natural_key[1]: expected a string, got an integer")
    message = error_of(tmp_path, '[environments.dev]\nrecords = "sqlite:///d.db"\nblob_map = { "gs://a/" = 1 }\n')
    assert message.endswith("environments.dev.blob_map: expected a string, got an integer")
    message = error_of(tmp_path, 'environments = { prod = "sqlite:///x.db" }\n')
    assert message.endswith("environments.prod: expected a table, got a string")


def test_missing_required_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[environments.prod]\nblob_map = {}\n")
    assert message.endswith("missing key 'records' in environments.prod")


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[journal]\nurl = "a"\nurl = \n')
    assert message.startswith(f"{tmp_path}/syncd.toml: invalid TOML at line 3: ")


def test_unknown_environment(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL)
    with pytest.raises(ConfigError, match=r"^unknown environment 'staging' \(known: dev, prod\)$"):
        config.environment("staging")


def test_relative_paths_resolve_against_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "conf", '[environments.a]\nrecords = "sqlite:///../data/a.db"\n'
                                    '[environments.b]\nrecords = "sqlite:////abs/b.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config("../conf/syncd.toml")  # relative to cwd, which is not the config's folder
    assert config.base_dir == str(tmp_path / "conf")
    assert config.environment("a").records == f"sqlite:///{tmp_path}/data/a.db"
    assert config.environment("b").records == "sqlite:////abs/b.db"
    assert config.journal.url == f"sqlite:///{tmp_path}/conf/.syncd/journal.db"


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite:///data/prod.db", "/base") == Path("/base/data/prod.db")
    assert sqlite_path("sqlite:////abs/x.db", "/base") == Path("/abs/x.db")
    with pytest.raises(ConfigError):
        sqlite_path("sqlite://host/x.db", "/base")
    with pytest.raises(ConfigError):
        sqlite_path("sqlite:///", "/base")


def test_syncd_config_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "cfg", '[environments.from_env]\nrecords = "sqlite:///e.db"\n', "other.toml")
    write(tmp_path, '[environments.from_cwd]\nrecords = "sqlite:///c.db"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNCD_CONFIG", str(path))
    assert find_config_path(None) == path
    assert list(load_config().environments) == ["from_env"]
    # --config wins over the variable
    assert list(load_config("syncd.toml").environments) == ["from_cwd"]


def test_cwd_syncd_toml_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[environments.here]\nrecords = "sqlite:///h.db"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    config = load_config()
    assert list(config.environments) == ["here"]
    assert config.environment("here").records == f"sqlite:///{tmp_path}/h.db"


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"^no config file: \./syncd\.toml \(use --config or SYNCD_CONFIG\)$"):
        load_config()
    config = load_config(required=False)
    assert config.base_dir == str(tmp_path)
    assert config.environments == {} and config.entities == {}
    assert config.journal.url == f"sqlite:///{tmp_path}/.syncd/journal.db"
    # a file named explicitly must exist, required or not
    with pytest.raises(ConfigError, match="config file not found: nope.toml"):
        load_config("nope.toml", required=False)
    monkeypatch.setenv("SYNCD_CONFIG", "gone.toml")
    with pytest.raises(ConfigError, match="config file not found: gone.toml"):
        load_config(required=False)


@pytest.mark.parametrize("records, expected", [
    ("https://user:secret@dev.example.org/api", "no credentials in the URL"),  # HTTP: see test_http_config.py
    ("mysql://db/x", "unsupported record store URL"),
    ("data/prod.db", "unsupported record store URL"),
])
def test_record_store_schemes(tmp_path: Path, records: str, expected: str) -> None:
    message = error_of(tmp_path, f'[environments.prod]\nrecords = "{records}"\n')
    assert "environments.prod.records" in message and expected in message


@pytest.mark.parametrize("mapping", [
    '{ "/srv/prod/" = "file:///srv/dev/" }',
    '{ "file:///srv/prod" = "file:///srv/dev/" }',
    '{ "file:///srv/prod/" = "file:///srv/dev" }',
    '{ "s3://bucket/" = "gs://b/" }',
    '{ "gs://" = "gs://b/" }',
])
def test_blob_map_validated(tmp_path: Path, mapping: str) -> None:
    message = error_of(tmp_path, f'[environments.dev]\nrecords = "sqlite:///d.db"\nblob_map = {mapping}\n')
    assert "environments.dev.blob_map" in message


def test_a_bare_bucket_in_blob_map_means_the_whole_bucket(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text('[environments.dev]\nrecords = "sqlite:///d.db"\n'
                    'blob_map = { "gs://co-prod-data" = "gs://co-dev-data" }\n')
    env = load_config(str(path)).environment("dev")
    # so gs://co-prod-data-old/x is not rewritten as if it were in co-prod-data
    assert env.blob_map == {"gs://co-prod-data/": "gs://co-dev-data/"}


@pytest.mark.parametrize("name", ["prod.eu", "pr od", "prød"])
def test_environment_names(tmp_path: Path, name: str) -> None:
    message = error_of(tmp_path, f'[environments."{name}"]\nrecords = "sqlite:///d.db"\n')
    assert f"environments.{name}: environment names" in message
