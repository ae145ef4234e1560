"""Global exact dedup and MinHash LSH near-dedup per language, as separate passes linked by files.

Pass 1 (`DedupSignatures`, inside the curation pipeline, any number of tasks): for every
document, datatrove's MinHash signature (same parameters, permutations and on-disk bucket
format as `MinhashDedupSignature`, so datatrove's `MinhashDedupBuckets` runs pass 2 as is),
plus a sidecar per task: language, source priority and an exact-text hash. Pass 3
(`DedupClusters`, one task) joins exact-hash groups (global, whatever the number of tasks,
where the old in-task set was silently incomplete) and LSH pairs into connected components and
keeps, per component, the copy from the source with the highest priority (datatrove's
`MinhashDedupCluster` keeps the root of a union-by-size tree, whatever its source). Pass 4
(`DedupFilter`) drops the others with reason `duplicate` (same text) or `near_duplicate`.

Why not datatrove's signature step as is: it consumes documents instead of passing them on,
and its word splitting is per language through spaCy/NLTK (no Maltese). Here shingles are
whitespace words of datatrove's `simplify_text`, prefixed with the language, so signatures
only match within one language. Shingles are hashed as bytes: xxhash 4.x refuses the `str`
datatrove's own `get_shingles` passes (`TypeError: Strings must be encoded before hashing`).

LSH bands x rows, measured with benchmarks/bench_dedup.py (776 injected near-copies, 696 of them
at 5-gram Jaccard >= 0.7): 14 x 8 (datatrove's default, found half the time at J 0.68) finds 75% of the
pairs and leaves 17 train x held-out pairs; 20 x 5 (J 0.51) finds 95% and leaves 1; 25 x 4 (half
at J 0.41) finds 0.9986 of the J >= 0.7 pairs and leaves none, with no removal on this corpus
that is not a near-duplicate. The price of 25 x 4: unrelated pages sharing ~40% of their 5-grams
(templates) are removed about half the time; no such pairs exist in that corpus to measure it.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.text import simplify_text

from occiforge.data.steps import CountingFilter, lang_of

REASONS = ("kept", "duplicate", "near_duplicate")
SIDE = np.dtype([("lang", "<u2"), ("priority", "<u2"), ("exact", "<u8")])


def exact_key(lang: str, text: str) -> int:
    """Same language and same text up to whitespace."""
    return int.from_bytes(hashlib.blake2b(f"{lang}\0{' '.join(text.split())}".encode(), digest_size=8).digest(), "little")


class DedupSignatures(MinhashDedupSignature):
    """Pass 1: writes MinHash signatures and the sidecar, tags `metadata["dedup_ref"]`, passes documents on."""

    name = "🎯 dedup signatures"

    def __init__(self, output_folder: DataFolderLike, config: MinhashConfig, languages: list[str], near: bool = True):
        super().__init__(output_folder, config=config, language="eng_Latn")
        self.languages = languages
        self.near = near

    def shingles(self, text: str, lang: str) -> np.ndarray:
        words = simplify_text(text, self.config.norm_config).split()
        n = self.config.n_grams
        grams = [" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))] if words else []
        return np.fromiter((self._hash_func(f"{lang}|{g}".encode()) for g in grams), dtype=np.uint64, count=len(grams)).reshape((-1, 1))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        fmt = f"<{self.config.hashes_per_bucket}{self.config.hash_config.struct_format}I"
        buckets = [self.output_folder.open(f"bucket_{b:03d}/{rank:05d}.minhash.sig", mode="wb") for b in range(self.config.num_buckets)]
        side: list[tuple[int, int, int]] = []
        codes = {code: i for i, code in enumerate(self.languages)}
        for idx, doc in enumerate(data):
            with self.track_time():
                lang = lang_of(doc)
                side.append((codes.get(lang, len(codes)), int(doc.metadata.get("priority", 1)), exact_key(lang, doc.text)))
                doc.metadata["dedup_ref"] = [rank, idx]
                sh = self.shingles(doc.text, lang) if self.near else np.empty((0, 1), np.uint64)
                if sh.size:
                    for f, part in zip(buckets, self.get_signature(sh)):
                        f.write(struct.pack(fmt, *part, idx))
            yield doc
        for f in buckets:
            f.close()
        self._sort_buckets(rank)
        with self.output_folder.open(f"side/{rank:05d}.npy", mode="wb") as f:
            np.save(f, np.array(side, dtype=SIDE))

    def _sort_buckets(self, rank: int) -> None:
        """Buckets must be sorted by signature for the bucket pass (what datatrove's step does)."""
        dtype = np.dtype([(f"h{i}", f"<{self.config.hash_config.struct_format}") for i in range(self.config.hashes_per_bucket)] + [("doc", "<u4")])
        for b in range(self.config.num_buckets):
            path = f"bucket_{b:03d}/{rank:05d}.minhash.sig"
            with self.output_folder.open(path, mode="rb") as f:
                records = np.frombuffer(f.read(), dtype=dtype).copy()
            records.sort(order=dtype.names)
            with self.output_folder.open(path, mode="wb") as f:
                f.write(records.tobytes())


class DedupClusters(PipelineStep):
    """Pass 3 (one task): components of exact groups and LSH pairs; keep the highest-priority copy."""

    type = "🫂 - DEDUP"
    name = "🎯 dedup clusters"

    def __init__(self, sig_folder: DataFolderLike, dups_folder: DataFolderLike | None, output_folder: DataFolderLike, exact: bool = True):
        super().__init__()
        self.sig_folder = get_datafolder(sig_folder)
        self.dups_folder = get_datafolder(dups_folder) if dups_folder else None
        self.output_folder = get_datafolder(output_folder)
        self.exact = exact

    def _edges(self, side: np.ndarray, offsets: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        a: list[np.ndarray] = []
        b: list[np.ndarray] = []
        if self.exact:  # neighbours in hash order with equal hashes: one chain per exact group
            order = np.argsort(side["exact"], kind="stable")
            same = side["exact"][order[1:]] == side["exact"][order[:-1]]
            a.append(order[:-1][same])
            b.append(order[1:][same])
        for name in self.dups_folder.list_files(glob_pattern="*.dups") if self.dups_folder else []:
            with self.dups_folder.open(name, "rb") as f:
                pairs = np.frombuffer(f.read(), dtype="<u4").reshape(-1, 4).astype(np.int64)
            if len(pairs):
                ga = np.array([offsets[r] for r in pairs[:, 0]]) + pairs[:, 1]
                gb = np.array([offsets[r] for r in pairs[:, 2]]) + pairs[:, 3]
                ok = side["lang"][ga] == side["lang"][gb]
                a.append(ga[ok])
                b.append(gb[ok])
        cat = (lambda xs: np.concatenate(xs) if xs else np.empty(0, np.int64))
        return cat(a), cat(b)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        files = sorted(self.sig_folder.list_files(subdirectory="side", glob_pattern="*.npy"))
        ranks = [int(f.rsplit("/", 1)[-1].split(".")[0]) for f in files]
        parts = []
        for f in files:
            with self.sig_folder.open(f, "rb") as fh:
                parts.append(np.load(fh))
        sizes = [len(p) for p in parts]
        offsets = dict(zip(ranks, np.cumsum([0, *sizes[:-1]]).tolist()))
        side = np.concatenate(parts) if parts else np.empty(0, SIDE)
        a, b = self._edges(side, offsets)
        n = len(side)
        if n == 0:
            return iter(())
        _, comp = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
        # first of each component by (component, -priority, global index) is its keeper
        order = np.lexsort((np.arange(n), -side["priority"].astype(np.int64), comp))
        keeper = np.empty(n, np.int64)
        first = np.r_[True, comp[order][1:] != comp[order][:-1]]
        keeper[order] = order[first][np.cumsum(first) - 1]
        reason = np.where(keeper == np.arange(n), 0, np.where(side["exact"] == side["exact"][keeper], 1, 2)).astype(np.uint8)
        for r, off, size in zip(ranks, offsets.values(), sizes):
            with self.output_folder.open(f"{r:05d}.npy", mode="wb") as fh:
                np.save(fh, reason[off:off + size])
        for i, what in enumerate(REASONS):
            self.stat_update(what, value=int((reason == i).sum()))
        return iter(())


class DedupFilter(CountingFilter):
    """Pass 4: drop what the cluster pass marked, with its reason, counted per language."""

    name = "🎯 dedup filter"

    def __init__(self, marks_folder: DataFolderLike, exclusion_writer: Any = None):
        super().__init__(exclusion_writer)
        self.marks = get_datafolder(marks_folder)
        self._cache: dict[int, np.ndarray] = {}

    def _reasons(self, rank: int) -> np.ndarray:
        if rank not in self._cache:
            with self.marks.open(f"{rank:05d}.npy", "rb") as f:
                self._cache[rank] = np.load(f)
        return self._cache[rank]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        rank, idx = doc.metadata.pop("dedup_ref")
        code = int(self._reasons(rank)[idx])
        return True if code == 0 else self.drop(doc, REASONS[code])
