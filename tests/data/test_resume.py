"""Killing the data stage and rerunning it resumes from completed tasks and gives the same documents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.data.helpers import read_out, recipe


def _docs(run: Path, langs: list[str]) -> list[tuple]:
    return sorted((d["id"], d["text"], d["metadata"]["split"]) for lang in langs for d in read_out(run, lang))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_data_stage_resumes_to_the_same_documents(tmp_path: Path):
    langs = ["de", "fr", "es", "it"]
    src = [{"name": "demo", "path": "builtin:demo"}]
    cmd = [sys.executable, "-m", "occiforge.cli", "data", "-q", "-c"]
    whole = recipe(tmp_path / "whole", src, langs, executor={"tasks": 4})
    subprocess.run([*cmd, str(whole)], cwd=REPO, check=True, timeout=240)

    cut = recipe(tmp_path / "cut", src, langs, executor={"tasks": 4})
    proc = subprocess.Popen([*cmd, str(cut)], cwd=REPO, start_new_session=True)
    work = tmp_path / "cut" / "run" / ".work"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(work.glob("data-*/logs/curate/completions/*")):
            os.killpg(proc.pid, signal.SIGKILL)  # this test's own child and its workers only
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    done = {p.name for p in work.glob("data-*/logs/curate/completions/*")}
    assert 1 <= len(done) < 4 and not (tmp_path / "cut" / "run" / "data").exists()

    subprocess.run([*cmd, str(cut)], cwd=REPO, check=True, timeout=240)
    log = "".join(p.read_text() for p in (tmp_path / "cut" / "run" / "data" / "logs" / "curate" / "logs").glob("*.log"))
    assert _docs(tmp_path / "cut" / "run", langs) == _docs(tmp_path / "whole" / "run", langs)
    assert len(list((tmp_path / "cut" / "run" / "data" / "logs" / "curate" / "logs").glob("task_*.log"))) == 4 and log
