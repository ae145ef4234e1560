"""Shared fixtures: tiny recipes on the built-in demo corpus, the optional ../shared data, free
ports, and the demo recipe's run, done at most once per pytest session and shared by every test
that asks for it.

Markers (see [tool.pytest.ini_options] in pyproject.toml): every test under tests/integration/
and every test that uses `demo_run` is marked `integration`; tests using `demo_run` also get a
longer timeout (DEMO_TIMEOUT) unless they set their own. Tests over ~3 s carry `slow`, in their
file (`@pytest.mark.slow`) or, for now, through SLOW_TESTS below. `make test-fast` leaves out
`integration` and `slow`.
"""

from __future__ import annotations

import os

# as the CLI does, before any test module imports transformers: progress bars and warnings read these
# at import time, and a test that counts stderr lines must not see them
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`make test`: one worker per core) every worker, and every process it starts,
# computes on one thread: two 2-thread jobs on 2 cores run 3-5x slower than one.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("OCCIFORGE_SHARED", REPO.parent / "shared"))

# The demo run (and its ablation) happen in the setup of the first test that asks for them, and
# pytest-timeout counts setup. A few minutes on 2 idle cores, but over 25 min on a 2-core machine
# shared with other jobs: these are limits for a hang, not a budget.
DEMO_TIMEOUT = 3600
# the demo recipe asks for 2 threads; beside another worker it gets one (a speed setting, not a result)
DEMO_THREADS = ["--set", "train.threads=1"] if WORKER else []
DEMO_ABLATION = ["--set", "models.cpt0.init=base", "--set", "models.cpt0.targets=[de]", "--set", "models.cpt0.replay=0"]


# Tests marked `slow` from here until their own files carry @pytest.mark.slow (then drop them here).
# Node ids relative to the repo root, without [parameters] (all of a test's parameters); a renamed
# test silently falls back into `make test-fast`.
# Chosen by CPU seconds per test (parent + children, load-independent), threshold ~3 s, so that
# `make test-fast` stays under 90 s on 2 cores; one caching test of the runner stays in it.
SLOW_TESTS = {
    # separate processes: torchrun / mp.spawn with 2 ranks, fresh interpreters
    "tests/train/test_distributed.py::test_two_ranks_train_and_save_a_hf_model",
    "tests/train/test_distributed.py::test_two_rank_checkpoint_resumes_in_one_process",
    "tests/eval/test_commands.py::test_torchrun_splits_the_work_and_gets_the_same_scores",
    "tests/train/test_loop.py::test_two_ranks_with_unequal_target_counts_match_one_process",
    "tests/test_lm.py::test_remote_code_never_runs_and_never_prompts",
    # whole tiny runs, 3-5 s of CPU each
    "tests/eval/test_stage.py::test_eval_stage_scores_every_model_and_writes_the_leaderboard",
    "tests/test_runner.py::test_changing_one_model_retrains_only_that_model",
    "tests/data/test_data_stage.py::test_data_stage_on_demo_corpus",
    "tests/test_content_checks.py::test_truncated_weights_are_retrained_and_said",
    "tests/tokenizer/test_stage.py::test_changing_the_embedding_init_retrains_only_the_models_it_touches",
    "tests/tokenizer/test_stage.py::test_extend_initialise_and_continue_in_one_run",
    "tests/tokenizer/test_stage.py::test_a_larger_foreign_vocabulary_is_refused_before_training",
    "tests/tokenizer/test_stage.py::test_extension_of_another_tokenizer_is_refused",
    "tests/eval/test_lmeval_agreement.py::test_scores_agree_with_lm_eval",  # every parameter; lm-eval's harness
    "tests/test_registry.py::test_force_reruns_per_model_work_and_registry_lists_models",
    "tests/test_registry.py::test_stage_on_without_its_input_is_refused",
}


def torchrun(logs: Path, *args: str) -> list[str]:
    """The command that runs ARGS under torchrun with 2 processes, on a port free on 127.0.0.1 right now
    (the OS picks it). torchrun's own logs go to `logs` (a test's tmp_path): left alone, it leaves
    a `torchelastic_*` folder in the system's temp directory for every launch."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", f"--master_port={port}",
            "--log-dir", str(logs / "torchrun-logs"), *args]


def occiforge_cli(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    """`python -m occiforge.cli ARGS` in the repo, as a user would run it; asserts exit code 0."""
    proc = subprocess.run([sys.executable, "-m", "occiforge.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _assert_finished(proc: subprocess.CompletedProcess, done: Path) -> None:
    """Exit code 0 is not enough: a SIGTERM during training writes a checkpoint and exits 0. `done`:
    what the run's last stage writes."""
    assert "stopped by" not in proc.stderr and done.is_file(), (
        f"the demo run stopped before {done}: {proc.stderr[-2000:]}")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of `occiforge run recipes/demo.yaml`, run once per session (only if a test
    asks for it). Shared by every test that uses it: read it, never write into it (copy it first,
    as `demo_ablation_run` does)."""
    if WORKER:  # the session's temp folder is per worker; its parent is shared by all of them
        claim = tmp_path_factory.getbasetemp().parent / "demo-run-by"
        assert not claim.exists(), (f"the demo ran on {claim.read_text()} and again on {WORKER}: `--dist loadgroup` "
                                    "is not grouping the tests that read it (pytest 9.2, pytest-xdist#1386?)")
        claim.write_text(WORKER)
    run = tmp_path_factory.mktemp("demo") / "run"
    if done := os.environ.get("OCCIFORGE_DEMO_RUN"):  # while editing: a copy of a finished demo run, brought up to date
        shutil.copytree(done, run)
    _assert_finished(occiforge_cli("run", "recipes/demo.yaml", "-q", "--set", f"run_dir={run}", *DEMO_THREADS, timeout=2400),
                     run / "report" / "index.html")
    return run


@pytest.fixture(scope="session")
def demo_ablation_run(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of `demo_run` with the replay ablation added through --set: one more bilingual model,
    `cpt0-de`, for German with replay 0. Only that model and its eval are computed (`--to eval`)."""
    run = tmp_path_factory.mktemp("demo_ablation") / "run"
    shutil.copytree(demo_run, run)
    proc = occiforge_cli("run", "recipes/demo.yaml", "-q", "--set", f"run_dir={run}", *DEMO_THREADS, *DEMO_ABLATION,
                         "--to", "eval", timeout=1200)
    _assert_finished(proc, run / "eval" / "cpt0-de" / "results.json")
    return run


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    integration_dir = Path(__file__).parent / "integration"
    for item in items:
        uses_demo = "demo_run" in getattr(item, "fixturenames", ())
        if uses_demo or integration_dir in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)
        if uses_demo:  # one worker runs the demo and every test that reads it (`--dist loadgroup`)
            item.add_marker(pytest.mark.xdist_group("demo"))
        if uses_demo and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEMO_TIMEOUT))
        if item.nodeid.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip (a failure when OCCIFORGE_REQUIRE_SHARED=1, as in CI)."""
    data = SHARED / "data"
    if not (data / "mono").is_dir():
        if os.environ.get("OCCIFORGE_REQUIRE_SHARED") == "1":
            pytest.fail(f"OCCIFORGE_REQUIRE_SHARED=1 but {data} is missing")
        pytest.skip(f"shared data not found at {data} (set OCCIFORGE_SHARED or clone with ../shared beside)")
    return data


def wait_for_lines(path: Path, lines: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Poll (every 50 ms) until `path` has `lines` lines while `proc` runs: the moment to signal or kill it."""
    end = time.time() + timeout
    while not (path.is_file() and path.read_text().count("\n") >= lines):
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"exited ({proc.returncode}) before {path} had {lines} lines: {err[-2000:]}")
        assert time.time() < end, f"{path} did not reach {lines} lines in {timeout:.0f} s"
        time.sleep(0.05)


def write_recipe(tmp_path: Path, tree: dict[str, Any], name: str = "r.yaml") -> str:
    """A recipe tree written as YAML; its path as a string, ready for argv."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return str(path)


def fails_in_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """`occiforge <argv>` in process: exit 2 and one line of stderr, no traceback. Returns the line."""
    from occiforge.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("occiforge: error: ") and "Traceback" not in err, err
    return err


def tiny_tree(run_dir: Path, langs: tuple[str, ...] = ("en", "de"), **over: Any) -> dict[str, Any]:
    """A recipe that runs every stage in seconds on the built-in demo corpus."""
    tree: dict[str, Any] = {
        "name": "tiny",
        "run_dir": str(run_dir),
        "languages": list(langs),
        "data": {"sources": [{"name": "demo", "path": "builtin:demo"}], "heldout_fraction": 0.2},
        "tokenizer": {"vocab_size": 600},
        "train": {
            "architecture": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64},
            "seq_len": 32, "batch_size": 4, "steps": 12, "save_every": 4, "log_every": 2, "threads": 1,
            "optim": {"warmup_steps": 2},
        },
        "models": {"base": {"mixture": {"en": 1.0}}, "cpt": {"init": "base", "targets": [lang for lang in langs if lang != "en"], "steps": 6}},
        "eval": {"max_docs_per_language": 3},
    }
    tree.update(over)
    return tree


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_tree(tmp_path / "run"), sort_keys=False))
    return path
