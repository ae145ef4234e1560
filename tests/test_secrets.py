"""A Hugging Face token in the environment never reaches a log or an artifact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tiny_tree

FAKE = "hf_occiforgeFAKEtoken0123456789abcdefXYZ"


@pytest.mark.slow
def test_fake_token_is_in_no_output(tmp_path: Path):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny_tree(tmp_path / "run")))
    env = {**os.environ, "HF_TOKEN": FAKE, "HUGGING_FACE_HUB_TOKEN": FAKE, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "occiforge.cli", "run", str(tmp_path / "r.yaml")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert FAKE not in out.stdout + out.stderr
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(files) > 20
    leaked = [str(p) for p in files if FAKE.encode() in p.read_bytes()]
    assert leaked == []
