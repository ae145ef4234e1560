import json
from pathlib import Path

import pytest

from occiforge import artifacts


def test_staged_dir_replaces_only_on_success(tmp_path: Path):
    final = tmp_path / "stage"
    with artifacts.staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with artifacts.staged_dir(final) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("killed mid-write")
    assert (final / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_manifest_must_match_fingerprint(tmp_path: Path):
    fp = artifacts.fingerprint({"a": 1}, "x")
    assert fp == artifacts.fingerprint({"a": 1}, "x") != artifacts.fingerprint({"a": 2}, "x")
    assert not artifacts.is_complete(tmp_path, fp)
    artifacts.write_manifest(tmp_path, fp, counts={"de": 3})
    assert artifacts.is_complete(tmp_path, fp) and not artifacts.is_complete(tmp_path, "other")
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"] == {"de": 3}
    (tmp_path / "manifest.json").write_text("{truncated")
    assert not artifacts.is_complete(tmp_path, fp)


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    from occiforge import artifacts

    path = tmp_path / "x.json"
    artifacts.write_json_atomic(path, {"a": 1})
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    assert path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777
