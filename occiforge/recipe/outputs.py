"""The `eval:`, `report:` and `release:` sections."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from occiforge.recipe.base import Strict, _check_langs


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
