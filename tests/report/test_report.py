"""The run report: one self-contained page that reads top-down, checked in a real browser.

The browser test opens the demo's report in headless Chromium (Debian's `chromium`, which
`make setup` installs where it can) and fails on any console error, broken image, network
request or sideways scrolling of the page, at a laptop's width and a narrow one; it saves a
screenshot. Where no Chromium can be found it skips, with the reason, unless
OCCIFORGE_REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from occiforge import artifacts
from occiforge.languages import EU_LANGUAGES
from occiforge.recipe import load_recipe
from occiforge.report.stage import render
from occiforge.runner import make_context
from tests.conftest import REPO

from .browser import check_page, find_chromium

DEMO = REPO / "recipes" / "demo.yaml"


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("OCCIFORGE_REQUIRE_BROWSER") == "1":
            pytest.fail("OCCIFORGE_REQUIRE_BROWSER=1 but no chromium on PATH")
        pytest.skip("no chromium on PATH: `make setup` installs Debian's chromium where apt-get can (root)")
    return exe


def test_browser_check_catches_each_problem(chromium: str, tmp_path: Path):
    """The checker itself: a page with each fault must show each one (so the real test can fail)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><html><body><script>console.error("boom")</script>'
                   '<img src="missing.png" alt="gone"><img src="https://example.invalid/x.png" alt="remote">'
                   '<div style="width:3000px">wide</div><script>notDefined()</script></body></html>')
    page = check_page(bad, exe=chromium)
    assert "boom" in page.console_errors and any("notDefined" in e for e in page.console_errors)
    assert page.broken_images == ["gone", "remote"] and page.overflow_px > 1000
    assert any(r.startswith("https://example.invalid") for r in page.requests)


def test_demo_report_in_a_real_browser(chromium: str, demo_run: Path, tmp_path: Path):
    index = demo_run / "report" / "index.html"
    for width in (1280, 760):  # a laptop, and a narrow window where wide tables must scroll in their box
        page = check_page(index, width=width, exe=chromium)
        assert page.console_errors == [], page.console_errors
        assert page.broken_images == [] and page.images >= 6, (page.broken_images, page.images)
        assert page.overflow_px == 0, f"the page scrolls sideways by {page.overflow_px}px at {width}px"
        assert page.requests == [], page.requests  # self-contained: nothing fetched
        shot = tmp_path / f"report-{width}.png"
        shot.write_bytes(page.screenshot)
        assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_report_reads_top_down_and_is_self_contained(demo_run: Path):
    page = (demo_run / "report" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'<(?:img|script|link|iframe)[^>]*\b(?:src|href)="(?!data:)', page) == []
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert ids[:5] == ["overview", "data", "stage-tokenizer", "train", "eval"], ids
    # what the run did: every language with its kept documents, every model with how it was made
    assert "continued from base on de with 30% en replay" in page and "trained from scratch on en 100%" in page
    overview = page[page.index('id="overview"'):page.index('id="data"')]
    assert all(f"<b>{lang}</b>" in overview for lang in EU_LANGUAGES)
    evaluation = page[page.index('id="eval"'):]
    assert "−" in evaluation and "vs base" in evaluation  # bits per byte as a change against the base model
    assert re.search(r"<td[^>]*>\d+\.\d ± \d+\.\d</td>", evaluation)  # multiple choice with a 95% interval
    assert "<th>n</th><th>chance</th>" in evaluation and "Best model per language" in evaluation
    best = evaluation[evaluation.index("Best model per language"):]
    best = best[: best.index("</table>")]
    assert best.count("<tr><th>") == 1 + len(EU_LANGUAGES)  # header + a row per language: long, never wide


@pytest.fixture
def run_copy(demo_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(demo_run, dst, ignore=shutil.ignore_patterns("release", "report", ".work"))
    return dst


def reseal(folder: Path, drop: tuple[str, ...] = ()) -> None:
    """Rewrite a folder's manifest after a test changed its artifacts (the house refuses tampered ones),
    without the fields in `drop`."""
    manifest = artifacts.read_manifest(folder) or {}
    artifacts.write_manifest(folder, manifest.pop("fingerprint"), **{k: v for k, v in manifest.items() if k not in ("files", *drop)})


def test_sections_of_stages_that_did_not_run_are_absent(run_copy: Path):
    recipe = load_recipe(DEMO, [f"run_dir={run_copy}", "report.title=<script>alert(1)</script>"])
    full = render(make_context(recipe, quiet=True))
    assert 'id="train"' in full and 'id="stage-tokenizer"' in full
    assert "<script>alert(1)" not in full and "&lt;script&gt;alert(1)" in full  # recipe text is escaped
    for log in run_copy.rglob("train_log.json"):  # trained models and mixtures
        log.unlink()
        reseal(log.parent)
    (run_copy / "tokenizer" / "section.html").unlink()
    reseal(run_copy / "tokenizer")
    page = render(make_context(recipe, quiet=True))
    assert 'id="train"' not in page and "<h2>Training</h2>" not in page  # absent, not empty
    assert 'id="stage-tokenizer"' not in page and 'href="#train"' not in page


def test_training_shows_per_language_loss_and_throughput_where_logged(run_copy: Path):
    """`loss_<lang>` and `val_loss` (training and held-out loss per language) and `tokens_per_s` in the
    training log, `seconds` in a model's manifest: the report draws what is there and names what is
    not, never a stand-in."""
    recipe = load_recipe(DEMO, [f"run_dir={run_copy}"])
    logs = {p: json.loads(p.read_text()) for p in run_copy.rglob("train_log.json")}  # trained models and mixtures
    for path, rows in logs.items():
        path.write_text(json.dumps([{k: v for k, v in r.items() if k not in ("val_loss", "tokens_per_s") and not k.startswith("loss_")}
                                    for r in rows]))
        reseal(path.parent, drop=("seconds",))  # no wall-clock either: tokens/s cannot be derived
    before = render(make_context(recipe, quiet=True))
    assert "Not recorded by this run's training logs: loss per language, tokens/s" in before
    assert 'alt="throughput"' not in before and "<th>tokens/s</th>" not in before
    log = run_copy / "models" / "cpt-de" / "train_log.json"
    log.write_text(json.dumps([{**r, "val_loss": {"de": 3.0 - i / 100, "en": 2.0}, "loss_de": 3.1, "loss_en": 2.1, "tokens_per_s": 1000.0 + i}
                               for i, r in enumerate(json.loads(log.read_text()))]))
    manifest = run_copy / "models" / "cpt-de" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "seconds": 12.5}))
    reseal(log.parent)
    after = render(make_context(recipe, quiet=True))
    assert 'alt="training loss per language"' in after and 'alt="held-out loss per language"' in after
    assert 'alt="throughput"' in after
    assert "<th>wall-clock</th><th>tokens/s</th>" in after and "<td>12 s</td>" in after
    assert "Not recorded by this run's training logs" not in after
