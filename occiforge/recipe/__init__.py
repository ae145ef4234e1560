"""The typed recipe: one YAML file describes a whole run.

Every section is a pydantic model with `extra="forbid"`, so a typo is an error naming the
key path. Relative paths in a recipe resolve against the current working directory.
The sections live in submodules (data, tokenizer, models, outputs, experts); this module holds
the whole `Recipe`, its cross-checks and loading, and re-exports every section's names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from occiforge import languages
from occiforge.errors import UserError
from occiforge.recipe.base import BUILTIN_DEMO, Strict, _check_langs, unknown_key
from occiforge.recipe.data import (
    DataConfig,
    ExecutorConfig,
    FilterConfig,
    LidConfig,
    NearDedupConfig,
    QualityConfig,
    SourceConfig,
)
from occiforge.recipe.experts import MergeEntry, MoeEntry, RouterConfig, TransferConfig
from occiforge.recipe.models import (
    MODEL_TAGS,
    ArchitectureConfig,
    BilingualModel,
    ChatSource,
    EmbeddingInit,
    ModelSpec,
    OptimConfig,
    PlannedModel,
    PretrainModel,
    RecordKind,
    SftModel,
    TrainConfig,
    kind_problem,
)
from occiforge.recipe.outputs import (
    EvalConfig,
    McTaskConfig,
    ReleaseConfig,
    ReportConfig,
)
from occiforge.recipe.tokenizer import TokenizerConfig, TokenizerExtendConfig


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
        positions = self.train.architecture.max_position_embeddings
        if any(spec.init == "scratch" for spec in self.models.values()) and self.train.seq_len + 1 > positions:
            # rows are seq_len + 1 tokens; models loaded from elsewhere are checked when training starts
            raise ValueError(f"train.seq_len: {self.train.seq_len} (+1 for the shifted target) is above the "
                             f"{positions} positions of train.architecture, which models from scratch are built with")
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML where a key given twice in one mapping is an error (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # `<<: *anchor` keys may be overridden; a key that is a list: PyYAML's own error
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), parse_yaml(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise UserError(f"--set {key}: value is not valid YAML ({e.__class__.__name__})") from None


def format_validation_error(source: str, err: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    """One line: the first problem, a typo'd key before the required key it leaves missing."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    parts = [*prefix, *first["loc"]]
    if len(parts) > 2 and parts[0] == "models" and parts[2] in MODEL_TAGS:
        del parts[2]  # the union's tag: the user wrote models.<key>.<field>
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        siblings = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"][:-1] == first["loc"][:-1]]
        msg = unknown_key(str(first["loc"][-1]), siblings)
    elif first["type"] == "model_kind":
        below, msg = kind_problem(first["input"])
        parts += below
    loc = ".".join(str(p) for p in parts)
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}" if loc else f"{source}: {msg}{more}"  # cross-field checks name their keys


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (`a.b=value`) and validate a recipe; every problem is a one-line UserError."""
    path = Path(path)
    try:
        tree = parse_yaml(path.read_text(encoding="utf-8"))
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


__all__ = [
    "ArchitectureConfig",
    "BUILTIN_DEMO",
    "BilingualModel",
    "ChatSource",
    "DataConfig",
    "EmbeddingInit",
    "EvalConfig",
    "ExecutorConfig",
    "FilterConfig",
    "LanguageConfig",
    "LidConfig",
    "MODEL_TAGS",
    "McTaskConfig",
    "MergeEntry",
    "ModelSpec",
    "MoeEntry",
    "NearDedupConfig",
    "OptimConfig",
    "PlannedModel",
    "PretrainModel",
    "QualityConfig",
    "Recipe",
    "RecordKind",
    "ReleaseConfig",
    "ReportConfig",
    "RouterConfig",
    "SftModel",
    "SourceConfig",
    "Strict",
    "TokenizerConfig",
    "TokenizerExtendConfig",
    "TrainConfig",
    "TransferConfig",
    "dump_recipe",
    "format_validation_error",
    "load_recipe",
    "parse_override",
    "register_languages",
    "set_path",
    "validate_tree",
]
