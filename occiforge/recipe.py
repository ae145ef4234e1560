"""The typed recipe: one YAML file describes a whole run.

Every section is a pydantic model with `extra="forbid"`, so a typo is an error naming the
key path. Relative paths in a recipe resolve against the current working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, field_validator, model_validator

from occiforge import languages
from occiforge.errors import UserError

BUILTIN_DEMO = "builtin:demo"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_langs(codes: list[str] | None) -> list[str] | None:
    for code in codes or []:
        if not languages.is_known(code):
            raise ValueError(f"unknown language code {code!r}; add it under 'add_languages' (see README)")
    return codes


class SourceConfig(Strict):
    """Where documents come from: a folder, the built-in demo corpus, or a HF dataset (`hf:<id>`).

    A folder holds one file per language (`<lang>.jsonl`, `.jsonl.gz`, `.jsonl.zst`, `.parquet`,
    `.warc.gz`), or, with `glob`, any files, labelled by `lang_key` or by language ID.
    """

    name: str
    path: str
    format: Literal["auto", "jsonl", "parquet", "warc"] = "auto"  # auto: from the file name
    glob: str | None = None  # e.g. "crawl/*.warc.gz": files of any language, labelled by LID
    text_key: str = "text"
    lang_key: str = "lang"
    config: str | None = None  # HF datasets only: the config (FineWeb-2 "pol_Latn", CulturaX "pl")
    split: str = "train"  # HF datasets only
    languages: list[str] | None = None  # default: the run's languages; other labels are dropped
    priority: int = Field(1, ge=1, le=65535)  # dedup keeps the copy with the highest priority

    _v = field_validator("languages")(_check_langs)


class LidConfig(Strict):
    """Language ID: assigns the label where a document has none, checks it where it has one."""

    enabled: bool = True
    threshold: float = Field(0.5, ge=0.0, le=1.0)  # minimum probability of the (labelled) language
    backend: Literal["py3langid", "fasttext"] = "py3langid"  # fasttext: GlotLID / lid.176 from model_path
    model_path: str | None = None  # a local fastText model file (backend: fasttext)

    @model_validator(mode="after")
    def _model(self) -> LidConfig:
        if self.backend == "fasttext" and not self.model_path:
            raise ValueError("backend: fasttext needs model_path (a local GlotLID or lid.176 .bin file)")
        return self


class FilterConfig(Strict):
    min_chars: int = Field(50, ge=0)
    max_chars: int | None = Field(None, ge=1)


class QualityConfig(Strict):
    """Per-language quality steps (thresholds and stop words: occiforge/data/quality_table.py)."""

    normalize: bool = True  # Unicode NFC and whitespace clean-up
    cookie_lines: bool = True  # remove cookie/policy boilerplate lines (per-language phrases)
    gopher: bool = True  # Gopher quality and repetition
    c4: bool = False  # C4 line rules (terminal punctuation, javascript, policy, lorem ipsum)
    fineweb: bool = False  # FineWeb line rules (punctuation, short lines, duplicated lines)
    pii: bool = True  # mask e-mail addresses, IP addresses and phone numbers


class NearDedupConfig(Strict):
    """MinHash LSH near-dedup per language, as datatrove's passes do it (signatures, buckets, clusters)."""

    enabled: bool = True
    n_grams: int = Field(5, ge=1)
    # 25 bands x 4 rows: recall 0.973 at precision 1.0 on injected near-copies, no cross-split pair left
    # (14 x 8: recall 0.756); measured in benchmarks/bench_dedup.py, see BENCHMARKS.md
    num_buckets: int = Field(25, ge=1)
    hashes_per_bucket: int = Field(4, ge=1)


class ExecutorConfig(Strict):
    """How datatrove runs the data pipeline: in-process/local workers, Slurm or Ray."""

    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(1, ge=1)
    workers: int = Field(1, ge=1)
    partition: str | None = None  # slurm
    time: str = "24:00:00"  # slurm
    cpus_per_task: int = Field(1, ge=1)
    mem_per_cpu_gb: float = Field(2.0, gt=0)


class DataConfig(Strict):
    sources: list[SourceConfig] = Field(min_length=1)
    lid: LidConfig = LidConfig()
    filters: FilterConfig = FilterConfig()
    quality: QualityConfig = QualityConfig()
    exact_dedup: bool = True  # global, whatever the number of tasks
    near_dedup: NearDedupConfig = NearDedupConfig()
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # drawn after dedup, by near-duplicate cluster
    on_error: Literal["skip", "fail"] = "skip"  # bad input (malformed line, truncated file): count or stop
    write_dropped: bool = False  # dropped documents -> data/dropped/<reason>/ with their reason
    executor: ExecutorConfig = ExecutorConfig()


class TokenizerExtendConfig(Strict):
    """Append tokens learned on target-language text to `tokenizer.pretrained`; old ids stay put."""

    languages: list[str] | Literal["auto"] = "auto"  # auto: run languages whose base fertility > threshold
    threshold: float = Field(2.0, gt=0)  # Occiglot's rule: keep the base tokenizer where fertility <= 2.0
    new_tokens: int = Field(8000, ge=1)  # one union extension shared by every target language
    min_frequency: int = Field(2, ge=1)
    # the embedding rows of the new tokens are each model's choice: models.<key>.embedding_init

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: list[str] | str) -> list[str] | str:
        return v if isinstance(v, str) else _check_langs(v) or []


class TokenizerConfig(Strict):
    kind: Literal["bpe", "unigram"] = "bpe"
    pretrained: str | None = None  # tokenizer.json, HF folder or hub id: use it instead of training
    vocab_size: int = Field(8192, ge=300)
    min_frequency: int = Field(2, ge=1)
    sampling_alpha: float = Field(0.5, ge=0.0, le=1.0)  # share_l ∝ size_l ** alpha
    # parity: start from chars, then raise languages whose parity on `parallel` is above parity_target
    balance_by: Literal["bytes", "chars", "parity"] = "chars"
    max_bytes: int = Field(200_000_000, ge=1)  # training sample budget
    languages: list[str] | None = None
    parallel: str | None = None  # folder of line-aligned <lang>.txt incl. en.txt: parity in the report
    parity_rounds: int = Field(6, ge=1)  # balance_by: parity trains at most this many times
    parity_target: float = Field(1.3, ge=1.0)  # ... and stops once every language is at or below this
    extend: TokenizerExtendConfig | None = None

    _v = field_validator("languages")(_check_langs)

    @model_validator(mode="after")
    def _needs(self) -> TokenizerConfig:
        if self.extend is not None and not self.pretrained:
            raise ValueError("extend needs 'pretrained' (the tokenizer to extend)")
        if self.balance_by == "parity" and not self.parallel:
            raise ValueError("balance_by: parity needs 'parallel' (a folder of aligned <lang>.txt files)")
        return self


class ArchitectureConfig(Strict):
    """A Llama-architecture model built from scratch (`init: scratch`)."""

    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int | None = None
    intermediate_size: int = Field(352, ge=8)
    max_position_embeddings: int = Field(512, ge=16)
    rope_theta: float = 10000.0
    tie_embeddings: bool = True


class OptimConfig(Strict):
    """Learning rate schedule and AdamW. Every model warms up again from zero: re-warming then
    re-decaying is what continual pre-training needs (Ibrahim et al. 2024), so it is the default."""

    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    # wsd: warm-up, stable at lr, then decay over the last `decay_fraction` of the steps (MiniCPM)
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    decay_fraction: float = Field(0.2, gt=0, le=1)  # wsd only
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, gt=0)


class TrainConfig(Strict):
    """Defaults shared by every model; a model entry may override steps and lr."""

    architecture: ArchitectureConfig = ArchitectureConfig()
    optim: OptimConfig = OptimConfig()
    seq_len: int = Field(128, ge=8)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    steps: int = Field(200, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False  # torch.compile each decoder layer
    activation_checkpointing: bool = False
    save_every: int = Field(100, ge=1)  # resumable checkpoint interval (steps)
    log_every: int = Field(10, ge=1)
    val_every: int | None = Field(None, ge=1)  # validation loss per language on held-out tokens; default: never
    val_tokens: int = Field(4096, ge=16)  # held-out tokens per language and validation
    tensorboard: bool = True  # event files beside train_log.jsonl (models/.<name>.ckpt/tb while training)
    threads: int | None = Field(None, ge=1)  # torch CPU threads


EmbeddingInit = Literal["decomposition-calibrated", "decomposition", "mean", "random"]
RecordKind = Literal["base", "cpt", "joint", "sft", "merge", "moe"]  # kinds in the model registry


class ChatSource(Strict):
    """Conversations for instruction tuning: `builtin:demo` (occiforge/demo/sft), a folder of
    `<lang>.jsonl`, or `hf:<dataset id>`. A record is `{"messages": [{"role", "content"}...], "lang"}`
    (or `{"instruction", "response", "lang"}`, read as one user and one assistant turn)."""

    path: str
    languages: list[str] = Field(min_length=1)
    weight: float = Field(1.0, gt=0)  # sampling weight of each of its languages in the model's mix
    split: str = "train"  # HF datasets only
    messages_key: str = "messages"
    lang_key: str = "lang"
    heldout: int = Field(1, ge=0)  # last conversations per language kept out: validation and sample answers

    _v = field_validator("languages")(_check_langs)


class PlannedModel(Strict):
    """One concrete model the train stage runs (a bilingual entry expands to one per target)."""

    name: str
    key: str  # the models.<key> entry it came from
    kind: RecordKind
    init: str
    mixture: dict[str, float]
    target: str | None = None
    replay: float | None = None
    replay_language: str | None = None
    steps: int
    tokens: int | None = None  # a budget in tokens: steps follow from it and the world size
    lr: float
    embedding_init: EmbeddingInit
    chat: list[ChatSource] | None = None  # sft: conversation sources
    chat_template: Literal["chatml", "tokenizer"] | None = None  # sft: ChatML added, or the tokenizer's own


class _ModelEntry(Strict):
    """What every model kind has: where it starts, how long it trains."""

    init: str = "scratch"  # "scratch", an earlier model's name, or an HF folder / hub id
    steps: int | None = Field(None, ge=1)
    tokens: int | None = Field(None, ge=1)  # a budget in tokens (sequence positions) instead of steps
    lr: float | None = Field(None, gt=0)
    # rows of the tokens tokenizer.extend added, when `init` is a model with the base vocabulary
    # (train/embeddings.py; measured in BENCHMARKS.md, "Tokenizer")
    embedding_init: EmbeddingInit = "decomposition-calibrated"

    def languages_used(self) -> set[str]:
        raise NotImplementedError

    def plan(self, key: str, train: TrainConfig) -> list[PlannedModel]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _one_budget(self) -> _ModelEntry:
        if self.steps is not None and self.tokens is not None:
            raise ValueError("give 'steps' or 'tokens', not both")
        return self

    def _common(self, key: str, train: TrainConfig) -> dict[str, Any]:
        steps = self.steps or train.steps
        if self.tokens is not None:  # at one rank; the train stage divides by the world size it runs on
            steps = -(-self.tokens // (train.batch_size * train.grad_accum * train.seq_len))
        return dict(key=key, init=self.init, steps=steps, tokens=self.tokens, lr=self.lr or train.optim.lr,
                    embedding_init=self.embedding_init)


class PretrainModel(_ModelEntry):
    """(Continued) pre-training on a language mixture: `base` from scratch, `joint` on several languages."""

    kind: Literal["pretrain"] = "pretrain"
    mixture: dict[str, float]  # language -> sampling weight

    @field_validator("mixture")
    @classmethod
    def _mixture_ok(cls, v: dict[str, float]) -> dict[str, float]:
        _check_langs(list(v))
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("mixture weights must be >= 0 with a positive sum")
        return v

    def languages_used(self) -> set[str]:
        return set(self.mixture)

    def plan(self, key: str, train: TrainConfig) -> list[PlannedModel]:
        active = [lang for lang, w in self.mixture.items() if w > 0]
        kind = "base" if self.init == "scratch" else "joint" if len(active) > 1 else "cpt"
        return [PlannedModel(name=key, kind=kind, mixture=dict(self.mixture), **self._common(key, train))]


class BilingualModel(_ModelEntry):
    """One continued pre-training per target language: the target at 1 - replay, `replay_language` at replay."""

    kind: Literal["bilingual"] = "bilingual"
    targets: list[str] = Field(min_length=1)
    replay: float = Field(0.3, ge=0.0, le=1.0)
    replay_language: str = "en"

    _v = field_validator("targets")(_check_langs)

    def languages_used(self) -> set[str]:
        return {*self.targets, self.replay_language}

    def plan(self, key: str, train: TrainConfig) -> list[PlannedModel]:
        out = []
        for target in self.targets:
            mix = {target: 1.0 - self.replay}
            if self.replay > 0:
                mix[self.replay_language] = mix.get(self.replay_language, 0.0) + self.replay
            out.append(PlannedModel(name=f"{key}-{target}", kind="cpt", mixture=mix, target=target, replay=self.replay,
                                    replay_language=self.replay_language, **self._common(key, train)))
        return out


class SftModel(_ModelEntry):
    """Instruction tuning of an earlier model (or a HF one) on conversations, loss on assistant tokens only."""

    kind: Literal["sft"] = "sft"
    init: str  # no default: instruction tuning starts from a trained model
    data: list[ChatSource] = Field(min_length=1)
    # chatml: <|im_start|>/<|im_end|> added as special tokens with the ChatML template (Occiglot's choice);
    # tokenizer: the template the tokenizer already has (an error where it has none)
    chat_template: Literal["chatml", "tokenizer"] = "chatml"

    @field_validator("init")
    @classmethod
    def _not_scratch(cls, v: str) -> str:
        if v == "scratch":
            raise ValueError("instruction tuning starts from a trained model, not 'scratch'")
        return v

    def languages_used(self) -> set[str]:
        return {lang for src in self.data for lang in src.languages}

    def mixture(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for src in self.data:
            for lang in src.languages:
                out[lang] = out.get(lang, 0.0) + src.weight
        return out

    def plan(self, key: str, train: TrainConfig) -> list[PlannedModel]:
        return [PlannedModel(name=key, kind="sft", mixture=self.mixture(), chat=list(self.data),
                             chat_template=self.chat_template, **self._common(key, train))]


MODEL_TAGS = ("pretrain", "bilingual", "sft")


def _model_kind(v: Any) -> str | None:
    """`kind` when given; else `targets` means bilingual, `mixture` pretrain, `data` sft (exactly one)."""
    if not isinstance(v, dict):
        return getattr(v, "kind", None)
    if "kind" in v:
        return v["kind"]
    given = [k for k in ("targets", "mixture", "data") if k in v]
    return {"targets": "bilingual", "mixture": "pretrain", "data": "sft"}[given[0]] if len(given) == 1 else None


ModelSpec = Annotated[
    Annotated[PretrainModel, Tag("pretrain")] | Annotated[BilingualModel, Tag("bilingual")] | Annotated[SftModel, Tag("sft")],
    Discriminator(_model_kind, custom_error_type="model_kind",
                  custom_error_message="give exactly one of 'mixture' (kind: pretrain), 'targets' (kind: bilingual) "
                                       "or 'data' (kind: sft)"),
]


class McTaskConfig(Strict):
    """A multiple-choice task: `builtin:<name>` (demo_qa; m_arc, belebele... from the HF hub),
    `hf:<dataset id>` with `template`, or a folder of `<lang>.jsonl` (task named after the folder)."""

    path: str
    name: str | None = None  # default: the built-in's or the folder's name
    template: str | None = None  # prompt template (occiforge.eval.tasks.TEMPLATES); default by name
    fewshot: int | None = Field(None, ge=0)  # default: eval.fewshot, else the template's reference
    prompt: Literal["en", "native"] = "en"  # prompt words in English or in the items' language
    max_items: int | None = Field(None, ge=1)  # per language


class EvalConfig(Strict):
    bpb: bool = True
    languages: list[str] | None = None  # default: the run's languages
    max_docs_per_language: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    max_len: int | None = Field(None, ge=2)  # tokens per scoring window; default train.seq_len + 1
    extra_models: dict[str, str] = {}  # name -> HF folder or hub id, scored beside the run's models
    mc: list[McTaskConfig] = []  # multiple-choice tasks, scored for every model (leaderboard)
    fewshot: int | None = Field(None, ge=0)  # examples per prompt for every mc task without its own
    seed: int = 1234  # few-shot draws

    _v = field_validator("languages")(_check_langs)


class ReportConfig(Strict):
    enabled: bool = True
    title: str | None = None


class ReleaseConfig(Strict):
    """Hub-ready folders of the run's models (`release/<model>/`); uploaded only with `push: true`.

    The Hub token comes from HF_TOKEN or huggingface_hub's stored login, never from a recipe."""

    models: list[str] | None = None  # default: every model in the model registry
    license: str = "apache-2.0"  # the card's license (a Hub license id)
    push: bool = False  # upload with HfApi.upload_folder; otherwise a dry run lists what would go up
    org: str | None = None  # repos are <org>/<repo_prefix><model>; default: the token's own namespace
    repo_prefix: str = ""
    max_shard_size: str = "5GB"  # safetensors shards above this size (transformers' notation)
    private: bool = True  # new repos start private: nothing is published by accident


class LanguageConfig(Strict):
    """A language the recipe adds to the built-in 24; every stage then treats it like them."""

    code: str = Field(pattern=r"^[a-z]{2,3}$")  # ISO 639-1 where there is one (uk, ca, eu)
    iso3: str = Field(pattern=r"^[a-z]{3}$")  # ISO 639-3 (ukr)
    script: str = Field(pattern=r"^[A-Z][a-z]{3}$")  # ISO 15924 (Cyrl)
    name: str
    native: str | None = None
    prompt: dict[str, str] | None = None  # eval prompt words: question, answer, passage, topic, because, therefore

    def to_language(self) -> languages.Language:
        words = tuple(self.prompt[k] for k in languages.PROMPT_KEYS) if self.prompt else None
        return languages.Language(self.code, self.iso3, self.script, self.name, self.native or self.name, eu=False,
                                  prompt=words)

    @field_validator("prompt")
    @classmethod
    def _all_words(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and (keys := set(languages.PROMPT_KEYS) ^ set(v)):
            raise ValueError(f"prompt words must be exactly {list(languages.PROMPT_KEYS)} (differs in {sorted(keys)})")
        return v


# --- Mixture of European Experts: merge, moe, transfer (occiforge/experts) ---------------------


class MergeEntry(Strict):
    """One merged model: its experts (model names of this run, or HF folders) merged tensor by tensor."""

    method: Literal["linear", "task_arithmetic", "ties"] = "linear"
    experts: list[str] = Field(min_length=2)
    base: str | None = None  # task_arithmetic, ties: default the experts' common init
    weights: list[float] | None = None  # one per expert; default 1.0 each
    density: float | None = Field(None, gt=0, le=1)  # ties: share of each delta kept (default 0.2); else 1.0
    scale: float = 1.0  # task_arithmetic, ties: factor on the merged delta (mergekit's `lambda`)
    normalize: bool | None = None  # divide by the summed weights; default as mergekit (linear, ties: yes)

    @model_validator(mode="after")
    def _consistent(self) -> MergeEntry:
        if self.weights is not None and len(self.weights) != len(self.experts):
            raise ValueError(f"weights: {len(self.weights)} given for {len(self.experts)} experts ({', '.join(self.experts)})")
        if self.method == "linear" and self.base is not None:
            raise ValueError("base: a linear merge has no base (use task_arithmetic or ties)")
        return self


class RouterConfig(Strict):
    """How a mixture routes: rows from language centroids, then optionally a brief training."""

    init: Literal["language", "random"] = "language"  # language: per-language hidden-state centroids
    scale: float = Field(4.0, gt=0)  # norm of each router row
    calibration_tokens: int = Field(8192, ge=16)  # per expert language, from its training text
    train: Literal["none", "router", "all"] = "none"  # router: all else frozen; all: the whole mixture
    steps: int = Field(100, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(4, ge=0)
    batch_size: int | None = Field(None, ge=1)  # default train.batch_size; rows cycle through the experts' languages
    distill: bool = True  # loss: KL to the expert of each row's language (else the LM loss on the text)
    language_loss: float = Field(0.3, ge=0)  # + this x cross-entropy of every router against the row's expert


class MoeEntry(Strict):
    """One mixture: each expert's MLP one expert per layer, the rest averaged or from the base."""

    experts: list[str] = Field(min_length=2)  # model names of this run, or HF folders
    languages: list[str] | None = None  # each expert's language; default each expert's bilingual target
    top_k: int = Field(2, ge=1)
    shared: Literal["average", "base"] = "average"  # attention, norms (and embeddings unless by_language)
    # by_language: each token's embedding row averaged over the experts weighted by its frequency in their languages
    embeddings: Literal["by_language", "shared"] = "by_language"
    base: str | None = None  # shared: base; default the experts' common init
    router: RouterConfig = RouterConfig()
    analysis_languages: list[str] | None = None  # routing shares on held-out text; default the experts' languages

    _v = field_validator("languages", "analysis_languages")(_check_langs)

    @model_validator(mode="after")
    def _consistent(self) -> MoeEntry:
        if self.top_k > len(self.experts):
            raise ValueError(f"top_k {self.top_k} is larger than the number of experts ({len(self.experts)}: "
                             f"{', '.join(self.experts)})")
        if self.languages is not None and len(self.languages) != len(self.experts):
            raise ValueError(f"languages: {len(self.languages)} given for {len(self.experts)} experts ({', '.join(self.experts)})")
        return self


class TransferConfig(Strict):
    """The transfer study: a bilingual entry's models (one per language, one base) scored on every language."""

    models: str  # a models.<key> entry with `targets` (use replay: 0 for pure monolingual continuation)
    groups: int | None = Field(None, ge=1)  # suggested expert groups; default about sqrt(languages)
    linkage: Literal["average", "complete", "single", "weighted"] = "average"


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    run_dir: str | None = None  # default: runs/<name>
    seed: int = 0
    trust_remote_code: list[str] = []  # models/tokenizers (as named in this recipe) whose own Python code may run
    add_languages: list[LanguageConfig] = []  # registered before the rest of the recipe is read
    languages: list[str] = Field(min_length=1)
    data: DataConfig
    tokenizer: TokenizerConfig = TokenizerConfig()
    train: TrainConfig = TrainConfig()
    models: dict[str, ModelSpec] = {}
    eval: EvalConfig = EvalConfig()
    report: ReportConfig = ReportConfig()
    release: ReleaseConfig | None = None  # off unless the recipe has a `release:` section

    merge: dict[str, MergeEntry] = {}  # merged models by name (occiforge/experts)
    moe: dict[str, MoeEntry] = {}  # mixtures of experts by name
    transfer: TransferConfig | None = None  # the transfer study over a bilingual entry's languages

    _v = field_validator("languages")(_check_langs)

    @model_validator(mode="after")
    def _cross_checks(self) -> Recipe:
        langs = set(self.languages)
        made: dict[str, str] = {}  # model name -> the models.<key> that makes it
        for key, spec in self.models.items():
            if used := spec.languages_used() - langs:
                raise ValueError(f"models.{key}: languages {sorted(used)} are not in 'languages'")
            if isinstance(self.models.get(spec.init), BilingualModel):
                raise ValueError(f"models.{key}.init: {spec.init!r} is a per-target group; start from one of its "
                                 f"models, e.g. {spec.init}-{self.models[spec.init].targets[0]}")  # type: ignore[union-attr]
            later = spec.init in self.models or spec.init in {pm.name for pm in self.plan()}  # a key or an expanded name
            if spec.init != "scratch" and later and spec.init not in made:
                raise ValueError(f"models.{key}.init: {spec.init!r} must be defined before {key!r}")
            for pm in spec.plan(key, self.train):
                if pm.name in made:
                    raise ValueError(f"models.{key}: makes a model named {pm.name!r}, as models.{made[pm.name]} does; "
                                     "model names must be unique")
                made[pm.name] = key
        return self

    @model_validator(mode="after")
    def _experts_checks(self) -> Recipe:
        """merge/moe names unique among the models; each expert's language known; transfer over a bilingual entry."""
        planned = {pm.name: pm for pm in self.plan()}
        taken = set(planned)
        for section in ("merge", "moe"):
            for name in getattr(self, section):
                if name in taken:
                    raise ValueError(f"{section}.{name}: a model named {name!r} already exists; model names must be unique")
                taken.add(name)
        for name, m in self.moe.items():
            langs = m.languages or [planned[e].target if e in planned else None for e in m.experts]
            if None in langs:
                raise ValueError(f"moe.{name}.languages: expert {m.experts[langs.index(None)]!r} has no target language; "
                                 "give one language per expert")
            if used := {*langs, *(m.analysis_languages or [])} - set(self.languages):
                raise ValueError(f"moe.{name}: languages {sorted(used)} are not in 'languages'")  # type: ignore[type-var]
        if self.transfer and not isinstance(self.models.get(self.transfer.models), BilingualModel):
            raise ValueError(f"transfer.models: {self.transfer.models!r} must name a models entry with 'targets'")
        return self


    @property
    def run_path(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")

    def plan(self) -> list[PlannedModel]:
        """Expand model entries into the concrete list of models, in training order."""
        return [pm for key, spec in self.models.items() for pm in spec.plan(key, self.train)]


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.0.c` in a nested dict/list tree, creating dicts for missing keys."""
    keys = dotted.split(".")
    node: Any = tree
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise UserError(f"--set {dotted}: {key!r} is not a valid index into a list of {len(node)}")
            key = int(key)  # type: ignore[assignment]
        elif not isinstance(node, dict):
            raise UserError(f"--set {dotted}: {'.'.join(keys[:i])} is not a mapping")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(key), (dict, list)):
                node[key] = {}
            node = node[key]


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise UserError(f"--set {key}: value is not valid YAML ({e.__class__.__name__})") from None


def format_validation_error(source: str, err: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    first = err.errors()[0]
    parts = [*prefix, *first["loc"]]
    if len(parts) > 2 and parts[0] == "models" and parts[2] in MODEL_TAGS:
        del parts[2]  # the union's tag: the user wrote models.<key>.<field>
    loc = ".".join(str(p) for p in parts)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}" if loc else f"{source}: {msg}{more}"  # cross-field checks name their keys


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (`a.b=value`) and validate a recipe; every problem is a one-line UserError."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: recipe file not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the recipe ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping")
    for item in overrides or []:
        set_path(tree, *parse_override(item))
    return validate_tree(tree, str(path))


def register_languages(tree: dict[str, Any], source: str) -> None:
    """Add the recipe's own languages to the table before anything that names them is validated."""
    try:
        added = TypeAdapter(list[LanguageConfig]).validate_python(tree.get("add_languages") or [])
    except ValidationError as e:
        raise UserError(format_validation_error(source, e, prefix=("add_languages",))) from None
    for i, cfg in enumerate(added):
        if languages.is_builtin(cfg.code):
            raise UserError(f"{source}: add_languages.{i}.code: {cfg.code!r} is a built-in language "
                            f"({languages.get(cfg.code).name}); list it under 'languages' instead")
        languages.register(cfg.to_language())


def validate_tree(tree: dict[str, Any], source: str) -> Recipe:
    register_languages(tree, source)
    try:
        return Recipe.model_validate(tree)
    except ValidationError as e:
        raise UserError(format_validation_error(source, e)) from None


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
