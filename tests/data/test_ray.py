"""The data stage under datatrove's Ray executor, for real: a local Ray with 2 CPUs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from occiforge.cli import main
from tests.conftest import REPO
from tests.data.helpers import read_out, recipe, stats

# Ray runs in a child process of its own, never in the test session: its threads, handlers and
# shared memory would otherwise outlive the test inside the pytest process.
DRIVER = """import sys, ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
from occiforge.cli import main
code = main(["data", "-q", "-c", sys.argv[1]])
ray.shutdown()
sys.exit(code)
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_executor_gives_the_same_documents_as_local(tmp_path: Path):
    pytest.importorskip("ray")
    langs = ["de", "fr"]
    src = [{"name": "demo", "path": "builtin:demo"}]
    # every pass runs under Ray (curate, buckets, clusters, split); 4 bands instead of 25 keep the
    # bucket pass to 4 Ray tasks (each costs about a second to schedule on 2 cores)
    dedup = {"num_buckets": 4, "hashes_per_bucket": 4}
    local = recipe(tmp_path / "local", src, langs, executor={"kind": "local", "tasks": 2}, near_dedup=dedup)
    assert main(["data", "-q", "-c", str(local)]) == 0
    remote = recipe(tmp_path / "ray", src, langs, executor={"kind": "ray", "tasks": 2, "workers": 2}, near_dedup=dedup)
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(remote)], cwd=REPO, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for lang in langs:
        docs = {(d["id"], d["metadata"]["split"]) for d in read_out(tmp_path / "ray" / "run", lang)}
        assert docs == {(d["id"], d["metadata"]["split"]) for d in read_out(tmp_path / "local" / "run", lang)}
        assert stats(tmp_path / "ray" / "run")[lang]["dropped"] == {"lid_mismatch": 1, "duplicate": 1}
