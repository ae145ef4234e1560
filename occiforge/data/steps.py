"""Curation steps: filters decide keep/drop (with a reason), annotators add metadata.

Each step keeps per-language counters in datatrove stats under `<lang>/<what>` (drops as
`<lang>/dropped_<reason>`), so the data stage can report every figure per language. Documents
whose language is not known yet count under `und`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

UNKNOWN = "und"


def lang_of(doc: Document) -> str:
    return str(doc.metadata.get("language") or UNKNOWN)


class CountingFilter(BaseFilter):
    """A filter whose drops are counted per language and reason (`<lang>/dropped_<reason>`)."""

    def drop(self, doc: Document, reason: str) -> tuple[bool, str]:
        self.stat_update(f"{lang_of(doc)}/dropped_{reason}")
        return False, reason


class LanguageIdFilter(CountingFilter):
    """Language ID among the known languages: assigns the label where a document has none and
    checks it where it has one.

    Unlabelled: the detected language becomes the label when its probability reaches the
    threshold, else the document is dropped (`lid_low`, counted under `und`). Labelled: dropped
    when the detection differs (`lid_mismatch`) or its probability is low (`lid_low`). The
    detection is kept in `metadata["lid"]`, `metadata["lid_score"]`. py3langid by default;
    `backend="fasttext"` loads a local GlotLID or lid.176 model (labels like `__label__deu_Latn`).
    """

    name = "🌍 language ID"

    def __init__(self, threshold: float, candidates: list[str], backend: str = "py3langid", model_path: str | None = None):
        super().__init__()
        self.threshold = threshold
        self.candidates = candidates
        self.backend, self.model_path = backend, model_path
        self._ident = None

    def _identifier(self):  # built lazily: steps are pickled and shipped to workers
        if self._ident is None:
            self._ident = _fasttext(self.model_path, self.candidates) if self.backend == "fasttext" else _py3langid(self.candidates)
        return self._ident

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        detected, score = self._identifier()(doc.text.replace("\n", " "))
        doc.metadata["lid"], doc.metadata["lid_score"] = detected, round(float(score), 4)
        label = doc.metadata.get("language")
        if label is None:
            if score < self.threshold or detected is None:
                return self.drop(doc, "lid_low")
            doc.metadata["language"] = detected
            self.stat_update(f"{detected}/lid_assigned")
            return True
        if detected != label:
            return self.drop(doc, "lid_mismatch")
        if score < self.threshold:
            return self.drop(doc, "lid_low")
        return True


def _py3langid(candidates: list[str]):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    supported = set(ident.nb_classes)
    ident.set_languages([c for c in candidates if c in supported])
    return ident.classify


def _fasttext(model_path: str | None, candidates: list[str]):
    from occiforge import languages

    try:
        import fasttext
    except ImportError:
        raise RuntimeError("lid.backend: fasttext needs the fasttext package (pip install fasttext-numpy2)") from None
    model = fasttext.load_model(str(model_path))
    by_label = {}
    for code in candidates:
        lang = languages.get(code)
        by_label[f"__label__{lang.flores}"] = code  # GlotLID
        by_label[f"__label__{code}"] = code  # lid.176

    def classify(text: str) -> tuple[str | None, float]:
        labels, probs = model.predict(text, k=5)
        for label, p in zip(labels, probs):
            if label in by_label:
                return by_label[label], float(p)
        return None, 0.0

    return classify


class SourceLanguageFilter(CountingFilter):
    """Keep a document only if its (given or assigned) language is one its source may serve:
    an `hf:` source limited to `[de]` lets no `fr` through, even when `fr` is a run language."""

    name = "🏷 source languages"

    def __init__(self, allowed: dict[str, list[str]]):
        super().__init__()
        self.allowed = {src: set(langs) for src, langs in allowed.items()}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if lang_of(doc) in self.allowed.get(str(doc.metadata.get("source")), ()):
            return True
        return self.drop(doc, "other_language")


class LengthFilter(CountingFilter):
    name = "📏 length"

    def __init__(self, min_chars: int, max_chars: int | None):
        super().__init__()
        self.min_chars, self.max_chars = min_chars, max_chars

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        n = len(doc.text.strip())
        if n < self.min_chars:
            return self.drop(doc, "too_short")
        if self.max_chars is not None and n > self.max_chars:
            return self.drop(doc, "too_long")
        return True


def heldout_draw(key: str, fraction: float) -> str:
    h = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64
    return "heldout" if h < fraction else "train"


class SplitAnnotator(PipelineStep):
    """Assign `metadata["split"]` ("train" or "heldout") by a hash of the document id; a split the
    source gave wins. It runs after the dedup passes, which leave one document per near-duplicate
    cluster, so no cluster straddles the split (benchmarks/bench_dedup.py counts the pairs).
    Counts documents, bytes and characters per language and split."""

    name = "✂️ split"
    type = "🏷 - ANNOTATOR"

    def __init__(self, heldout_fraction: float):
        super().__init__()
        self.fraction = heldout_fraction

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for doc in data:
            split = doc.metadata.get("split")
            if split is None:
                split = heldout_draw(str(doc.id), self.fraction)
                doc.metadata["split"] = split
            lang = lang_of(doc)
            self.stat_update(f"{lang}/{split}_docs")
            self.stat_update(f"{lang}/{split}_bytes", value=len(doc.text.encode()))
            self.stat_update(f"{lang}/{split}_chars", value=len(doc.text))
            yield doc
