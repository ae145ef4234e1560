"""Training rows from whole documents: a seeded, shuffled pass over each language, packed best-fit.

Every language's documents (or conversations) are read in a fresh permutation each epoch and
packed, chunk by chunk, into rows of `window` tokens with best-fit decreasing, so a document that
fits in a row is never cut; a longer one is cut into window-sized pieces (conversations longer
than a row are left out and counted: half a conversation teaches the wrong thing). Each row then
draws its language from the mixture weights. The whole plan is a pure function of the seed and
the documents, so row `g` is the same in an interrupted and a resumed run, and the run knows up
front how many tokens and epochs of each language it will use.

Labels: the first token of every piece is never a target (nothing in the row predicts it), and
with a target mask (conversations) only its tokens are. Conversations (and documents, with
`within=True`) restart `position_ids` per piece, which transformers turns into attention kept
inside each piece; without them a row is one sequence, attending across its documents.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from occiforge.errors import UserError

CHUNK = 4096  # pieces best-fit together: the packing's look-ahead within an epoch
# epochs of a language with more pieces are planned once and shared through the cache; a smaller one re-packs in
# milliseconds (1,341 pieces: 3.5 ms), less than an fsynced cache folder costs (22 ms), and a tiny language repeated
# 9,860 times made 39k files (118 MB, 58 s) where planning alone took 0.7 s
CACHED_EPOCH_PIECES = CHUNK


@dataclass
class Docs:
    """One language's documents: ids back to back, offsets (n + 1), and an optional target mask."""

    ids: np.ndarray
    offsets: np.ndarray
    targets: np.ndarray | None = None

    def piece(self, s: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """ids[s : s + n] and their labels: -100 on the first token (nothing before it in the piece predicts
        it) and, with a target mask, wherever the mask is 0."""
        ids = np.asarray(self.ids[s : s + n], dtype=np.int64)
        labels = ids.copy()
        if self.targets is not None:
            labels[np.asarray(self.targets[s : s + n]) == 0] = -100
        labels[0] = -100
        return ids, labels


def pieces(docs: Docs, window: int, split_long: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(starts, lengths) of the items to pack, and how many documents were left out as too long.
    Lengths are int32 (a piece is at most one row): 4 bytes less per document at 1e8 documents."""
    starts, lens = docs.offsets[:-1].astype(np.int64), np.diff(docs.offsets).astype(np.int64)
    keep = lens > 0
    starts, lens = starts[keep], lens[keep]
    long = lens > window
    if not split_long:
        return starts[~long], lens[~long].astype(np.int32), int(long.sum())
    out_s, out_l = [starts[~long]], [lens[~long]]
    for s, n in zip(starts[long], lens[long]):
        cuts = np.arange(0, n, window)
        out_s.append(s + cuts)
        out_l.append(np.minimum(window, n - cuts))
    order = np.argsort(np.concatenate(out_s), kind="stable")  # back in document order
    return np.concatenate(out_s)[order], np.concatenate(out_l)[order].astype(np.int32), 0


def best_fit(lens: np.ndarray, cap: int) -> list[list[int]]:
    """Best-fit decreasing: longest first, each into the bin with the least room that still holds it."""
    bins: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (free space, bin index), sorted
    for i in np.argsort(-lens, kind="stable"):
        need = int(lens[i])
        k = bisect.bisect_left(room, (need, -1))
        if k == len(room):
            bins.append([int(i)])
            bisect.insort(room, (cap - need, len(bins) - 1))
        else:
            free, b = room.pop(k)
            bins[b].append(int(i))
            bisect.insort(room, (free - need, b))
    return bins


@dataclass(frozen=True)
class Epoch:
    """One epoch's rows as two flat arrays: the pieces of every row back to back (int32), and where
    each row starts in them (n_rows + 1), instead of a Python list per row. Planning 4e6 documents:
    2.6x faster and 2.4x less memory (298 vs 714 MB) than the lists (`benchmarks/bench_packing.py`)."""

    pieces: np.ndarray
    bounds: np.ndarray

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def row(self, k: int) -> np.ndarray:
        return self.pieces[self.bounds[k] : self.bounds[k + 1]]


class PlanCache:
    """Plan arrays on disk, shared by every process that sees `folder` (the ranks of a node, or of a
    job on a shared file system): the first to need an entry builds it while holding a lock and
    writes it under a unique name, then renames it into place; the others wait, then memory-map it.
    The plan is a pure function of its inputs, so two builders (a file system whose locks do not reach
    across nodes) write the same arrays and the later rename is simply dropped."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get(self, name: str, build: Callable[[], dict[str, np.ndarray]], keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """The entry's arrays (`keys`: the names it must hold), built under the lock if it is not there."""
        final = self.folder / name
        if not final.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / f".{name}.lock", "w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                except OSError:  # a file system without locks: every rank builds, one copy stays
                    pass
                if not final.is_dir():
                    self._write(final, build())
        try:
            arrays = {f.stem: np.load(f, mmap_mode="r") for f in sorted(final.glob("*.npy"))}
            if missing := sorted(set(keys) - set(arrays)):
                raise OSError(f"{', '.join(missing)} missing")
            return arrays
        except (ValueError, OSError) as e:  # written whole and renamed: only outside damage gets here
            raise UserError(f"{final}: damaged packing plan ({e}); delete {self.folder} and run again "
                            "(it is planned anew from the tokens, the training's checkpoints are kept)") from None

    @staticmethod
    def _write(final: Path, arrays: dict[str, np.ndarray]) -> None:
        # not artifacts.staged_dir: its one temporary name and its replacing of `final` suit one writer, not several
        tmp = final.with_name(f".{final.name}.{socket.gethostname()}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for key, array in arrays.items():
            with open(tmp / f"{key}.npy", "wb") as f:
                np.save(f, array)
                f.flush()
                os.fsync(f.fileno())  # on disk before the rename makes the entry visible
        try:
            os.rename(tmp, final)  # atomic; fails if another process's copy is already in place
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)


def _index_dtype(n: int) -> type:
    return np.int32 if n < 2**31 else np.int64


@dataclass
class LanguagePass:
    """The rows of one language: epoch after epoch, each a shuffled best-fit packing of its pieces.

    Only the two most recently built epochs are kept (training reads them in order), and the row
    count of every epoch built so far, so locating a row never rebuilds more than its own epoch."""

    docs: Docs
    window: int
    seed: int
    stream: int  # this language's index: a seed of its own
    split_long: bool
    cache: PlanCache | None = None  # shared with the other ranks: built once, memory-mapped by all
    _epochs: dict[int, Epoch] = field(default_factory=dict)
    _rows: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def build() -> dict[str, np.ndarray]:
            starts, lens, dropped = pieces(self.docs, self.window, self.split_long)
            return {"starts": starts, "lens": lens, "dropped": np.array(dropped)}

        # everything the plan depends on, so a cached plan of other documents or settings is never read
        digest = hashlib.blake2b(memoryview(np.ascontiguousarray(self.docs.offsets, dtype=np.int64)), digest_size=8)
        self._key = f"{self.stream}-{digest.hexdigest()}-w{self.window}-s{self.seed}-{int(self.split_long)}"
        got = self._cached("pieces", build, ("starts", "lens", "dropped"))
        self.starts, self.lens, self.dropped = got["starts"], got["lens"], int(got["dropped"])
        self.tokens_per_epoch = int(self.lens.sum())

    def _cached(self, what: str, build: Callable[[], dict[str, np.ndarray]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        if self.cache is None:
            return build()
        return self.cache.get(f"{self._key}-{what}", build, keys)

    def epoch(self, e: int) -> Epoch:
        if e not in self._epochs:
            build = lambda: vars(self._build(e))  # noqa: E731
            got = self._cached(f"epoch{e}", build, ("pieces", "bounds")) if len(self.lens) > CACHED_EPOCH_PIECES else build()
            self._epochs[e] = Epoch(got["pieces"], got["bounds"])
            self._rows[e] = len(self._epochs[e])
            if len(self._epochs) > 2:  # drop the oldest other than e (dicts keep insertion order)
                self._epochs.pop(next(k for k in self._epochs if k != e))
        return self._epochs[e]

    def _build(self, e: int) -> Epoch:
        """Shuffle the pieces, best-fit each CHUNK of them, then shuffle the rows (bins) of the epoch."""
        rng = np.random.default_rng([self.seed, self.stream, e])
        perm = rng.permutation(len(self.lens))
        dt = _index_dtype(len(perm))
        flat, sizes = [], []
        for chunk in np.array_split(perm, max(1, -(-len(perm) // CHUNK))):
            bins = best_fit(self.lens[chunk], self.window)
            flat.append(chunk[np.fromiter((j for b in bins for j in b), dtype=np.int64)].astype(dt))
            sizes.append(np.fromiter((len(b) for b in bins), dtype=np.int64, count=len(bins)))
        pieces_, size = np.concatenate(flat), np.concatenate(sizes)
        order = rng.permutation(len(size))
        old_start = np.cumsum(size) - size
        bounds = np.zeros(len(size) + 1, dtype=np.int64)
        np.cumsum(size[order], out=bounds[1:])
        gather = np.repeat(old_start[order] - bounds[:-1], size[order]) + np.arange(len(pieces_))
        return Epoch(pieces_[gather], bounds)

    def rows_in(self, e: int) -> int:
        if e not in self._rows:
            self.epoch(e)
        return self._rows[e]

    def locate(self, k: int) -> tuple[int, int]:
        """(epoch, row within it) of this language's k-th row."""
        e = 0
        while k and k >= self.rows_in(e):  # row 0 of an epoch is found without planning that epoch
            k -= self.rows_in(e)
            e += 1
        return e, k

    def usage(self, rows: int) -> int:
        """Tokens the first `rows` rows hold (what `rows` rows of this language consume)."""
        e, k = self.locate(rows)
        ep = self.epoch(e) if k else None
        return e * self.tokens_per_epoch + (int(self.lens[ep.pieces[: ep.bounds[k]]].sum()) if ep else 0)


class PackedMixture:
    """Rows of `window` tokens from several languages: row g's language is drawn from the weights,
    its content is the next row of that language's pass. `total_rows` fixes the plan (and the
    epochs it uses); asking for a row beyond it is an error, not a silent wrap-around."""

    def __init__(self, docs: dict[str, Docs], weights: dict[str, float], window: int, seed: int, total_rows: int,
                 pad_id: int, conversations: bool = False, where: str = "train", cache: PlanCache | None = None,
                 within: bool = False):
        self.langs = [lang for lang, w in weights.items() if w > 0]
        self.window, self.pad, self.conversations = window, pad_id, conversations
        self.within = within or conversations  # attention inside each piece: conversations always
        self.passes = {}
        for i, lang in enumerate(self.langs):
            p = LanguagePass(docs[lang], window, seed, i, split_long=not conversations, cache=cache)
            if p.tokens_per_epoch == 0:
                what = "conversations that fit in a row" if conversations and p.dropped else "tokens"
                raise UserError(f"{where}: no {what} for language {lang} (mixture weight {weights[lang]})")
            self.passes[lang] = p
        probs = np.array([weights[lang] for lang in self.langs], dtype=np.float64)
        rng = np.random.default_rng([seed, len(self.langs), 0x5EED])
        self.row_lang = rng.choice(len(self.langs), size=total_rows, p=probs / probs.sum()).astype(np.int16)
        self.row_index = np.zeros(total_rows, dtype=_index_dtype(total_rows))
        for i in range(len(self.langs)):
            hits = np.nonzero(self.row_lang == i)[0]
            self.row_index[hits] = np.arange(len(hits))

    def usage(self) -> dict[str, dict[str, float]]:
        """Per language: tokens the plan uses, tokens in one epoch, epochs (and documents left out)."""
        out = {}
        for i, lang in enumerate(self.langs):
            p = self.passes[lang]
            used = p.usage(int((self.row_lang == i).sum()))
            out[lang] = {"tokens": used, "tokens_per_epoch": p.tokens_per_epoch,
                         "epochs": round(used / p.tokens_per_epoch, 3), "left_out_too_long": p.dropped}
        return out

    def row(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(ids, labels, position_ids, language index) of global row g."""
        li = int(self.row_lang[g])
        p = self.passes[self.langs[li]]
        e, k = p.locate(int(self.row_index[g]))
        ids = np.full(self.window, self.pad, dtype=np.int64)
        labels = np.full(self.window, -100, dtype=np.int64)
        pos = np.zeros(self.window, dtype=np.int64)
        at = 0
        for piece in p.epoch(e).row(k):
            n = int(p.lens[piece])
            ids[at : at + n], labels[at : at + n] = p.docs.piece(int(p.starts[piece]), n)
            pos[at : at + n] = np.arange(n)
            at += n
        pos[at:] = np.arange(self.window - at)  # padding: a block of its own, no targets
        return ids, labels, pos, li

    def batch(self, rows: range) -> dict[str, torch.Tensor]:
        """input_ids, labels, groups (language index per row), and position_ids where attention stays within pieces."""
        if rows.stop > len(self.row_lang):
            raise IndexError(f"row {rows.stop - 1} is beyond the plan's {len(self.row_lang)} rows")
        parts = [self.row(g) for g in rows]
        out = {"input_ids": torch.from_numpy(np.stack([p[0] for p in parts])),
               "labels": torch.from_numpy(np.stack([p[1] for p in parts])),
               "groups": torch.tensor([p[3] for p in parts])}
        if self.within:
            out["position_ids"] = torch.from_numpy(np.stack([p[2] for p in parts]))
        return out
