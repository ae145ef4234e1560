"""The `train:` section and the `models:` entries (pretrain, bilingual, sft), expanded into planned models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from occiforge.recipe.base import Strict, _check_langs, unknown_key


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
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)  # AdamW's own range
    grad_clip: float = Field(1.0, gt=0)

    def warmup_for(self, steps: int) -> int:
        """The warm-up's steps in a run of `steps`: `warmup_steps`, unless that leaves no step to decay in
        (at most `warmup_steps + 1` steps); then half the run for a decaying schedule (so that it still
        ends at its floor), all but the last step for a constant one. The train stage says so."""
        if self.warmup_steps + 1 < steps:
            return self.warmup_steps
        return max(steps - 1, 0) if self.schedule == "constant" else max(steps - 1, 0) // 2

    def warmup_moved(self, steps: int) -> bool:
        """Whether `warmup_for` differs from the rule before it (min(warmup_steps, steps - 1), whose decaying
        schedules then ended at their peak): fingerprints hash the warm-up only then, earlier runs keep theirs."""
        return self.warmup_for(steps) != min(self.warmup_steps, max(steps - 1, 0))


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
    chunked_loss: bool = True  # the loss beside the head, chunk by chunk, no logits kept (occiforge.lossfn); false: the model's own
    activation_checkpointing: bool = False
    # rows packed from several documents: each token attends to its own document only (position_ids restart per
    # document, as they always do for conversations); false: across the row, as most pre-training does
    attention_within_documents: bool = False
    save_every: int = Field(100, ge=1)  # resumable checkpoint interval (steps)
    log_every: int = Field(10, ge=1)
    val_every: int | None = Field(None, ge=1)  # validation loss per language on held-out tokens; default: never
    val_tokens: int = Field(4096, ge=16)  # held-out tokens per language and validation
    tensorboard: bool = True  # event files beside train_log.jsonl (models/.<name>.ckpt/tb while training)
    threads: int | None = Field(None, ge=1)  # torch CPU threads
    # under torchrun: how long a rank waits in a collective while rank 0 works alone (loading, hashing a
    # checkpoint, saving; NCCL's own default is 10) before the job fails
    dist_timeout_minutes: float = Field(30, gt=0)


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
    heldout: int = Field(1, ge=1)  # last conversations per language kept out: the sample answer's prompt, validation

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
    replay: float = Field(0.3, ge=0.0, lt=1.0)  # 1.0 would train a target model on none of its language
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

    @model_validator(mode="after")
    def _one_weight_per_language(self) -> SftModel:
        # a language's sets are packed as one pass (in proportion to their size): a weight can only
        # set the share of a language, so two sources of one language must not ask for different ones
        seen: dict[str, float] = {}
        for src in self.data:
            for lang in src.languages:
                if seen.setdefault(lang, src.weight) != src.weight:
                    raise ValueError(f"{lang} is in several sources with different weights ({seen[lang]:g}, {src.weight:g}): "
                                     "weights set each language's share; give its sources one weight, or merge them")
        return self

    def languages_used(self) -> set[str]:
        return {lang for src in self.data for lang in src.languages}

    def mixture(self) -> dict[str, float]:
        """Each language at its one weight, however many sources it has (their sets are one pass)."""
        return {lang: src.weight for src in self.data for lang in src.languages}

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


KIND_RULE = "give exactly one of 'mixture' (kind: pretrain), 'targets' (kind: bilingual) or 'data' (kind: sft)"


def kind_problem(entry: Any) -> tuple[list[str], str]:
    """Why a models entry has no kind, as (key path below the entry, message): a `kind` that is none of
    them, a key no kind has (a typo of 'mixture' hides the kind), or the rule itself."""
    if isinstance(entry, dict):
        if "kind" in entry and entry["kind"] not in MODEL_TAGS:
            return ["kind"], f"{entry['kind']!r} is not one of {', '.join(MODEL_TAGS)}"
        known = {name for cls in (PretrainModel, BilingualModel, SftModel) for name in cls.model_fields}
        if unknown := [str(k) for k in entry if k not in known]:
            return [unknown[0]], unknown_key(unknown[0], known)
    return [], KIND_RULE


ModelSpec = Annotated[
    Annotated[PretrainModel, Tag("pretrain")] | Annotated[BilingualModel, Tag("bilingual")] | Annotated[SftModel, Tag("sft")],
    Discriminator(_model_kind, custom_error_type="model_kind", custom_error_message=KIND_RULE),
]
