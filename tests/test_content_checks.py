"""Manifests record every artifact's size and content: a changed file is noticed, said, and redone."""

from __future__ import annotations

import json
import os
from pathlib import Path

from occiforge import artifacts
from occiforge.cli import main


def test_manifest_lists_files_and_notices_changes(tmp_path: Path):
    folder = tmp_path / "stage"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.bin").write_bytes(b"\x00" * 10)
    (folder / ".work").mkdir()
    artifacts.write_manifest(folder, "fp", stage="x")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["a.txt", "sub/b.bin"] and manifest["files"]["a.txt"][0] == 5
    assert artifacts.is_complete(folder, "fp") and not artifacts.is_complete(folder, "other")

    (folder / "sub" / "b.bin").write_bytes(b"\x01" * 10)  # same size, other bytes
    stale = artifacts.staleness(folder, "fp")
    assert stale is not None and stale.tampered and "b.bin changed" in stale.reason
    (folder / "sub" / "b.bin").write_bytes(b"\x00" * 10)  # the same bytes again: fine, whatever the mtime
    assert artifacts.is_complete(folder, "fp")
    (folder / "a.txt").unlink()
    assert "a.txt is missing" in artifacts.staleness(folder, "fp").reason


def test_truncated_weights_are_retrained_and_said(tiny_recipe: Path, capsys):
    run = tiny_recipe.parent / "run"
    assert main(["run", str(tiny_recipe), "-q"]) == 0
    weights = run / "models" / "cpt-de" / "model.safetensors"
    base = run / "models" / "base" / "model.safetensors"
    good, base_mtime = weights.read_bytes(), base.stat().st_mtime_ns
    with open(weights, "r+b") as f:
        f.truncate(len(good) // 2)
    capsys.readouterr()
    assert main(["run", str(tiny_recipe), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"model cpt-de: {weights} changed since it was written; redoing it" in err
    assert weights.read_bytes() == good  # retrained, deterministically, to the same weights
    assert base.stat().st_mtime_ns == base_mtime  # only the damaged model was redone

    shard = next((run / "tokens").glob("*/train.bin"))
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    os.utime(shard)
    assert main(["run", str(tiny_recipe), "-q", "--to", "tokens"]) == 0
    assert "tokens: " in capsys.readouterr().err and shard.read_bytes() != bytes(data)
