"""The typed recipe: one YAML file describes a whole run.

Every section is a pydantic model with `extra="forbid"`, so a typo is an error naming the
key path. Relative paths in a recipe resolve against the current working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from occiforge import languages
from occiforge.errors import UserError

BUILTIN_DEMO = "builtin:demo"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_langs(codes: list[str] | None) -> list[str] | None:
    for code in codes or []:
        if not languages.is_known(code):
            raise ValueError(f"unknown language code {code!r}; add it to occiforge/languages.py")
    return codes


class SourceConfig(Strict):
    """A folder of `<lang>.jsonl` files, the built-in demo corpus, or a HF dataset (`hf:<id>`)."""

    name: str
    path: str
    text_key: str = "text"
    lang_key: str = "lang"
    split: str = "train"  # HF datasets only
    languages: list[str] | None = None  # default: the run's languages
    priority: int = Field(1, ge=1, le=65535)  # dedup keeps the copy with the highest priority

    _v = field_validator("languages")(_check_langs)


class LidConfig(Strict):
    enabled: bool = True
    threshold: float = Field(0.5, ge=0.0, le=1.0)  # minimum probability of the labelled language


class FilterConfig(Strict):
    min_chars: int = Field(50, ge=0)
    max_chars: int | None = Field(None, ge=1)


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
    exact_dedup: bool = True
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # by hash of document id, per language
    executor: ExecutorConfig = ExecutorConfig()


class TokenizerExtendConfig(Strict):
    """Append tokens learned on target-language text to `tokenizer.pretrained`; old ids stay put."""

    languages: list[str] | Literal["auto"] = "auto"  # auto: run languages whose base fertility > threshold
    threshold: float = Field(2.0, gt=0)  # Occiglot's rule: keep the base tokenizer where fertility <= 2.0
    new_tokens: int = Field(8000, ge=1)  # one union extension shared by every target language
    min_frequency: int = Field(2, ge=1)
    # embedding rows of new tokens (tokenizer/embeddings.py; measured in BENCHMARKS.md)
    init: Literal["decomposition-calibrated", "decomposition", "mean", "random"] = "decomposition-calibrated"

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
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
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
    threads: int | None = Field(None, ge=1)  # torch CPU threads


class ModelSpec(Strict):
    """One model to train, or (with `targets`) one bilingual model per target language."""

    init: str = "scratch"  # "scratch", an earlier model's name, or an HF folder / hub id
    mixture: dict[str, float] | None = None  # language -> sampling weight
    targets: list[str] | None = None  # bilingual: target + replay_language at `replay`
    replay: float = Field(0.3, ge=0.0, le=1.0)
    replay_language: str = "en"
    steps: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)

    _v = field_validator("targets")(_check_langs)

    @field_validator("mixture")
    @classmethod
    def _mixture_ok(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        _check_langs(list(v))
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("mixture weights must be >= 0 with a positive sum")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> ModelSpec:
        if (self.mixture is None) == (self.targets is None):
            raise ValueError("give exactly one of 'mixture' or 'targets'")
        return self


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


class PlannedModel(Strict):
    """A model after expanding `targets`: what the train stage actually runs."""

    name: str
    init: str
    mixture: dict[str, float]
    steps: int
    lr: float


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    run_dir: str | None = None  # default: runs/<name>
    seed: int = 0
    languages: list[str] = Field(min_length=1)
    data: DataConfig
    tokenizer: TokenizerConfig = TokenizerConfig()
    train: TrainConfig = TrainConfig()
    models: dict[str, ModelSpec] = {}
    eval: EvalConfig = EvalConfig()
    report: ReportConfig = ReportConfig()

    _v = field_validator("languages")(_check_langs)

    @model_validator(mode="after")
    def _cross_checks(self) -> Recipe:
        langs = set(self.languages)
        names: set[str] = set()
        for key, spec in self.models.items():
            used = set(spec.mixture or {}) | set(spec.targets or [])
            if spec.targets is not None:
                used.add(spec.replay_language)
            if used - langs:
                raise ValueError(f"models.{key}: languages {sorted(used - langs)} are not in 'languages'")
            if spec.init != "scratch" and spec.init in self.models and spec.init not in names:
                raise ValueError(f"models.{key}.init: {spec.init!r} must be defined before {key!r}")
            if spec.targets is not None and spec.init in self.models and self.models[spec.init].targets:
                raise ValueError(f"models.{key}.init: cannot start from a per-target model group")
            names.add(key)
        return self

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")

    def plan(self) -> list[PlannedModel]:
        """Expand model entries into the concrete list of models, in training order."""
        out: list[PlannedModel] = []
        for key, spec in self.models.items():
            common = dict(init=spec.init, steps=spec.steps or self.train.steps, lr=spec.lr or self.train.optim.lr)
            if spec.mixture is not None:
                out.append(PlannedModel(name=key, mixture=dict(spec.mixture), **common))
                continue
            for target in spec.targets or []:
                mix = {target: 1.0 - spec.replay}
                if spec.replay > 0:
                    mix[spec.replay_language] = mix.get(spec.replay_language, 0.0) + spec.replay
                out.append(PlannedModel(name=f"{key}-{target}", mixture=mix, **common))
        return out


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


def format_validation_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (`a.b=value`) and validate a recipe; every problem is a one-line UserError."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: recipe file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping")
    for item in overrides or []:
        set_path(tree, *parse_override(item))
    return validate_tree(tree, str(path))


def validate_tree(tree: dict[str, Any], source: str) -> Recipe:
    try:
        return Recipe.model_validate(tree)
    except ValidationError as e:
        raise UserError(format_validation_error(source, e)) from None


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
