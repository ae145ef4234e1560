"""Curation steps: filters decide keep/drop (with a reason), annotators add metadata.

Each step keeps per-language counters in datatrove stats under `<lang>/<what>`, so the data
stage can report every figure per language.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from occiforge import languages


def _lang(doc: Document) -> str:
    return str(doc.metadata.get("language"))


class LanguageIdFilter(BaseFilter):
    """Identify each document with py3langid (offline) among the known languages.

    Drops a document whose detected language differs from its label (`lid_mismatch`) or whose
    probability for its label is below the threshold (`lid_low`). Keeps the detection in
    `metadata["lid"]` and `metadata["lid_score"]`.
    """

    name = "🌍 py3langid"

    def __init__(self, threshold: float, candidates: list[str]):
        super().__init__()
        self.threshold = threshold
        self.candidates = candidates
        self._ident = None

    def _identifier(self):  # built lazily: steps are pickled and shipped to workers
        if self._ident is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            supported = set(ident.nb_classes)
            ident.set_languages([c for c in self.candidates if c in supported])
            self._ident = ident
        return self._ident

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        detected, score = self._identifier().classify(doc.text.replace("\n", " "))
        doc.metadata["lid"], doc.metadata["lid_score"] = detected, round(float(score), 4)
        lang = _lang(doc)
        if detected != lang:
            self.stat_update(f"{lang}/dropped_lid_mismatch")
            return False, "lid_mismatch"
        if score < self.threshold:
            self.stat_update(f"{lang}/dropped_lid_low")
            return False, "lid_low"
        return True


class LanguageLabelFilter(BaseFilter):
    """Keep documents labelled with one of the run's languages (a HF dataset may hold more)."""

    name = "🏷 language label"

    def __init__(self, keep: list[str]):
        super().__init__()
        self.keep = set(keep)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return True if _lang(doc) in self.keep else (False, "other_language")


class LengthFilter(BaseFilter):
    name = "📏 length"

    def __init__(self, min_chars: int, max_chars: int | None):
        super().__init__()
        self.min_chars, self.max_chars = min_chars, max_chars

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        n = len(doc.text.strip())
        if n < self.min_chars:
            self.stat_update(f"{_lang(doc)}/dropped_too_short")
            return False, "too_short"
        if self.max_chars is not None and n > self.max_chars:
            self.stat_update(f"{_lang(doc)}/dropped_too_long")
            return False, "too_long"
        return True


class ExactDedupFilter(BaseFilter):
    """Drop exact duplicates (same normalised text, same language) within one task.

    Readers run in descending source priority, so the kept copy is the preferred one. At
    cluster scale, where duplicates cross tasks, run datatrove's signature-based dedup
    passes (ExactDedup / MinHash) before this pipeline instead.
    """

    name = "🫂 exact dedup"

    def __init__(self):
        super().__init__()
        self._seen: set[bytes] = set()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        key = hashlib.blake2b(f"{_lang(doc)}\0{' '.join(doc.text.split())}".encode(), digest_size=16).digest()
        if key in self._seen:
            self.stat_update(f"{_lang(doc)}/dropped_duplicate")
            return False, "duplicate"
        self._seen.add(key)
        return True


class SplitAnnotator(PipelineStep):
    """Assign `metadata["split"]` ("train" or "heldout") by a hash of the document id, unless
    the source already gave the document a split."""

    name = "✂️ split"
    type = "🏷 - ANNOTATOR"

    def __init__(self, heldout_fraction: float):
        super().__init__()
        self.fraction = heldout_fraction

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for doc in data:
            split = doc.metadata.get("split")
            if split is None:
                h = int.from_bytes(hashlib.sha1(str(doc.id).encode()).digest()[:8], "big") / 2**64
                split = "heldout" if h < self.fraction else "train"
                doc.metadata["split"] = split
            lang = _lang(doc)
            self.stat_update(f"{lang}/{split}_docs")
            self.stat_update(f"{lang}/{split}_bytes", value=len(doc.text.encode()))
            yield doc
