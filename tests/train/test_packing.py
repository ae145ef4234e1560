"""Rows from whole documents: best-fit packing, a shuffled pass per epoch, exact epoch accounting."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pytest

from occiforge.errors import UserError
from occiforge.train import packing
from occiforge.train.packing import (
    CHUNK,
    Docs,
    Epoch,
    LanguagePass,
    PackedMixture,
    PlanCache,
    best_fit,
)


def _docs(lengths: list[int], first: int = 10, targets: bool = False) -> Docs:
    """Document i is `lengths[i]` copies of id first + i, so a row shows which documents it holds."""
    ids = np.concatenate([np.full(n, first + i, dtype=np.uint16) for i, n in enumerate(lengths)])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    mask = np.asarray(np.arange(len(ids)) % 2, dtype=np.uint8) if targets else None
    return Docs(ids, offsets, mask)


def test_best_fit_places_every_item_whole_and_never_overfills():
    lens = np.random.default_rng(0).integers(1, 30, size=200)
    bins = best_fit(lens, 32)
    assert sorted(i for b in bins for i in b) == list(range(200))
    assert all(sum(lens[i] for i in b) <= 32 for b in bins)
    assert len(bins) <= np.ceil(lens.sum() / 32) * 1.1  # best-fit decreasing is close to the bound


def test_each_epoch_is_a_permutation_of_the_documents_and_long_ones_are_cut():
    p = LanguagePass(_docs([5, 9, 3, 40, 7, 2]), window=16, seed=0, stream=0, split_long=True)
    assert p.tokens_per_epoch == 66 and p.dropped == 0
    for e in range(3):
        held = sorted(int(n) for n in p.lens[p.epoch(e).pieces])
        assert held == sorted([5, 9, 3, 16, 16, 8, 7, 2])  # 40 -> 16 + 16 + 8; the rest whole
        assert all(p.lens[p.epoch(e).row(k)].sum() <= 16 for k in range(len(p.epoch(e))))
    assert not np.array_equal(p.epoch(0).pieces, p.epoch(1).pieces)  # a fresh shuffle every epoch


def _rows_as_lists(p: LanguagePass, e: int) -> list[list[int]]:
    """The epoch built the plain way (a Python list per row), as the flat arrays must reproduce it."""
    rng = np.random.default_rng([p.seed, p.stream, e])
    perm = rng.permutation(len(p.lens))
    bins = [[int(chunk[j]) for j in b] for chunk in np.array_split(perm, max(1, -(-len(perm) // CHUNK)))
            for b in best_fit(p.lens[chunk], p.window)]
    return [bins[i] for i in rng.permutation(len(bins))]


def test_flat_epochs_hold_the_rows_of_the_plain_construction_and_few_stay_in_memory():
    lens = np.random.default_rng(1).integers(1, 60, size=3 * CHUNK + 17)  # several chunks, one partial
    p = LanguagePass(_docs(lens.tolist()), window=64, seed=5, stream=2, split_long=True)
    for e in (0, 1):
        flat = p.epoch(e)
        assert [flat.row(k).tolist() for k in range(len(flat))] == _rows_as_lists(p, e)
        assert flat.pieces.dtype == np.int32 and flat.pieces.nbytes == 4 * len(p.lens)
    assert p.locate(p.rows_in(0) + p.rows_in(1) + 3) == (2, 3)
    assert len(p._epochs) <= 2  # epochs 0-2 were built; only the last two are kept
    assert p.usage(p.rows_in(0)) == p.tokens_per_epoch  # a whole epoch uses every token once


def test_rows_are_a_pure_function_of_the_seed_and_count_epochs_exactly():
    docs = {"en": _docs([12] * 20), "de": _docs([6] * 12, first=100)}
    a = PackedMixture(docs, {"en": 0.5, "de": 0.5}, window=25, seed=3, total_rows=40, pad_id=0)
    b = PackedMixture(docs, {"en": 0.5, "de": 0.5}, window=25, seed=3, total_rows=40, pad_id=0)
    assert all(np.array_equal(a.row(g)[0], b.row(g)[0]) for g in range(40))
    usage = a.usage()
    de_rows = int((a.row_lang == a.langs.index("de")).sum())
    assert usage["de"]["tokens"] == de_rows * 24  # four 6-token conversations fill each 25-token row
    assert usage["de"]["epochs"] == pytest.approx(de_rows * 24 / 72, abs=1e-3)
    assert usage["en"]["tokens_per_epoch"] == 240


def test_labels_skip_piece_starts_and_padding_and_conversations_restart_positions():
    mix = PackedMixture({"de": _docs([5, 4, 7], targets=True)}, {"de": 1.0}, window=10, seed=0, total_rows=4,
                        pad_id=0, conversations=True)
    batch = mix.batch(range(4))
    for ids, labels, pos in zip(batch["input_ids"], batch["labels"], batch["position_ids"]):
        starts = [i for i in range(10) if pos[i] == 0]
        assert all(labels[i] == -100 for i in starts)
        assert all(labels[i] == -100 or labels[i] == ids[i] for i in range(10))
        assert all(labels[i] == -100 for i in range(10) if ids[i] == 0)  # padding is never a target


@pytest.mark.parametrize("within", [False, True])
def test_documents_attend_within_themselves_only_when_asked(within: bool):
    """Pre-training rows are one sequence by default; `within` restarts positions per document, and a tiny
    Llama then sees the second document of a packed row exactly as it sees that document alone."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    mix = PackedMixture({"de": _docs([4, 3, 2])}, {"de": 1.0}, window=10, seed=0, total_rows=1, pad_id=0, within=within)
    batch = mix.batch(range(1))
    assert ("position_ids" in batch) == within
    ids = batch["input_ids"][0].tolist()
    start = next(i for i in range(1, 10) if ids[i] != ids[0])  # where the second document begins
    end = next(i for i in range(start, 10) if ids[i] != ids[start])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, max_position_embeddings=16)).eval()
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels" and k != "groups"}, use_cache=False).logits[0]
        alone = model(input_ids=batch["input_ids"][:, start:end], use_cache=False).logits[0]
    assert torch.allclose(packed[start:end], alone, atol=1e-5) == within


def test_conversations_longer_than_a_row_are_left_out_and_counted():
    mix = PackedMixture({"de": _docs([5, 30, 4])}, {"de": 1.0}, window=10, seed=0, total_rows=2, pad_id=0, conversations=True)
    assert mix.usage()["de"]["left_out_too_long"] == 1 and mix.usage()["de"]["tokens_per_epoch"] == 9


def test_an_empty_language_in_the_mixture_is_one_line_naming_model_and_language():
    empty = Docs(np.zeros(0, np.uint16), np.zeros(1, np.int64))
    with pytest.raises(UserError, match=r"models.joint \(joint\): no tokens for language fr"):
        PackedMixture({"en": _docs([5]), "fr": empty}, {"en": 1, "fr": 1}, 8, 0, 4, 0, where="models.joint (joint)")


def test_a_row_beyond_the_plan_is_an_error():
    mix = PackedMixture({"en": _docs([5, 6])}, {"en": 1.0}, window=8, seed=0, total_rows=3, pad_id=0)
    with pytest.raises(IndexError):
        mix.batch(range(2, 4))


# --- one plan shared by the ranks: built once, memory-mapped by the others ---------------------------

_MIX = {"en": 0.7, "de": 0.3}


def _mix_docs() -> dict[str, Docs]:
    rng = np.random.default_rng(4)
    return {"en": _docs(rng.integers(1, 40, size=300).tolist()), "de": _docs(rng.integers(1, 70, size=40).tolist(), first=400)}


def _mixture(cache: PlanCache | None) -> PackedMixture:
    return PackedMixture(_mix_docs(), _MIX, window=33, seed=7, total_rows=600, pad_id=0, cache=cache)


@pytest.fixture
def cache_every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sharing tests' languages are small: have their epochs cached as a large language's are."""
    monkeypatch.setattr(packing, "CACHED_EPOCH_PIECES", 0)


def test_a_small_language_repeated_many_times_caches_only_its_pieces(tmp_path: Path):
    mix = PackedMixture({"de": _docs([10])}, {"de": 1.0}, window=33, seed=0, total_rows=5000, pad_id=0, cache=PlanCache(tmp_path))
    assert mix.usage()["de"]["epochs"] == 5000
    assert [p.name.rsplit("-", 1)[1] for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["pieces"]


def test_a_shared_plan_gives_the_same_rows_and_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              cache_every_epoch: None):
    plain, cached = _mixture(None), _mixture(PlanCache(tmp_path))
    assert plain.usage() == cached.usage() and plain.usage()["de"]["epochs"] > 2  # several epochs planned
    want = np.stack([plain.row(g)[1] for g in range(600)])
    assert np.array_equal(want, np.stack([cached.row(g)[1] for g in range(600)]))
    assert isinstance(cached.passes["de"].epoch(1).pieces, np.memmap)

    def no_build(self: LanguagePass, e: int) -> None:
        raise AssertionError(f"epoch {e} planned again")

    other = _mix_docs()
    other["de"] = _docs([5] * 40, first=400)  # other documents (new token shards): never the cached plan
    changed = PackedMixture(other, _MIX, window=33, seed=7, total_rows=600, pad_id=0, cache=PlanCache(tmp_path))
    assert changed.usage()["de"]["tokens_per_epoch"] == 200
    monkeypatch.setattr(LanguagePass, "_build", no_build)  # a second rank (or a resumed run) only maps
    again = _mixture(PlanCache(tmp_path))
    assert all(np.array_equal(want[g], again.row(g)[1]) for g in range(0, 600, 7))


def _rank(folder: str, out: str, start: object) -> None:
    """A rank planning the mixture; every epoch or piece list it builds itself leaves a file."""
    original = LanguagePass._build

    def counted(self: LanguagePass, e: int) -> Epoch:
        Path(out, f"built-{os.getpid()}-{self.stream}-{e}").touch()
        time.sleep(0.05)  # widen the window in which the other rank asks for the same epoch
        return original(self, e)

    LanguagePass._build = counted  # type: ignore[method-assign]
    packing.CACHED_EPOCH_PIECES = 0  # as in the fixture: a spawned process imports the module afresh
    start.wait()  # type: ignore[attr-defined]  # all ranks plan at the same moment
    rows = _mixture(PlanCache(Path(folder)))
    rows.usage()
    np.save(Path(out, f"rows-{os.getpid()}.npy"), np.stack([rows.row(g)[0] for g in range(600)]))


def test_ranks_planning_at_once_build_each_epoch_once(tmp_path: Path):
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(3)
    procs = [ctx.Process(target=_rank, args=(str(tmp_path / "plan"), str(tmp_path), start)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    built = [f.name.split("-", 2)[2] for f in tmp_path.glob("built-*")]
    assert built and sorted(built) == sorted(set(built))  # every (language, epoch) planned by one rank only
    rows = [np.load(f) for f in tmp_path.glob("rows-*.npy")]
    assert len(rows) == 3 and all(np.array_equal(rows[0], r) for r in rows[1:])
    assert np.array_equal(rows[0], np.stack([_mixture(None).row(g)[0] for g in range(600)]))
    assert not [f for f in (tmp_path / "plan").iterdir() if f.name.startswith(".") and not f.name.endswith(".lock")]


def test_without_file_locks_a_second_copy_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_every_epoch: None):
    def no_locks(*args: object) -> None:
        raise OSError(37, "No locks available")

    monkeypatch.setattr("fcntl.flock", no_locks)
    want = np.stack([_mixture(None).row(g)[0] for g in range(600)])
    assert np.array_equal(want, np.stack([_mixture(PlanCache(tmp_path)).row(g)[0] for g in range(600)]))
    entry = next(p for p in tmp_path.iterdir() if p.name.startswith("1-") and p.name.endswith("-epoch0"))
    PlanCache._write(entry, {"pieces": np.zeros(3, np.int32)})  # a second builder, later: its rename fails
    left = [p.name for p in tmp_path.glob(f".{entry.name}.*") if p.suffix != ".lock"]
    assert np.load(entry / "pieces.npy").shape != (3,) and not left  # the first copy stays, no temporary is left


def test_a_damaged_plan_file_is_one_line_naming_what_to_delete(tmp_path: Path):
    """Written whole and renamed, a plan file is cut only by outside damage: that was a numpy traceback."""
    cache = PlanCache(tmp_path / "plan")
    cache.get("entry", lambda: {"order": np.arange(1000), "bounds": np.arange(10)})
    f = tmp_path / "plan" / "entry" / "order.npy"
    f.write_bytes(f.read_bytes()[:40])
    with pytest.raises(UserError, match=r"entry: damaged packing plan .*delete .*plan and run again"):
        cache.get("entry", lambda: pytest.fail("a damaged entry is not rebuilt in place"))
    f.unlink()  # a file gone: a KeyError traceback where the plan was read
    with pytest.raises(UserError, match=r"entry: damaged packing plan \(order missing\)"):
        cache.get("entry", lambda: pytest.fail("not rebuilt in place"), ("order", "bounds"))
