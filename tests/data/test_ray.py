"""The data stage under datatrove's Ray executor, for real: a local Ray with 2 CPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from occiforge.cli import main
from tests.data.helpers import read_out, recipe, stats


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_executor_gives_the_same_documents_as_local(tmp_path: Path):
    ray = pytest.importorskip("ray")
    langs = ["de", "fr"]
    src = [{"name": "demo", "path": "builtin:demo"}]
    local = recipe(tmp_path / "local", src, langs, executor={"kind": "local", "tasks": 2})
    assert main(["data", "-q", "-c", str(local)]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = recipe(tmp_path / "ray", src, langs, executor={"kind": "ray", "tasks": 2, "workers": 2})
        assert main(["data", "-q", "-c", str(remote)]) == 0
    finally:
        ray.shutdown()
    for lang in langs:
        docs = {(d["id"], d["metadata"]["split"]) for d in read_out(tmp_path / "ray" / "run", lang)}
        assert docs == {(d["id"], d["metadata"]["split"]) for d in read_out(tmp_path / "local" / "run", lang)}
        assert stats(tmp_path / "ray" / "run")[lang]["dropped"] == {"lid_mismatch": 1, "duplicate": 1}
