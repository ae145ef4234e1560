"""Tasks as data: a task is a template x a language, posed with English or native prompt words.

A `Template` turns an item into (context, choices) with the words of occiforge.eval.prompts;
it carries a version (bump it whenever the prompt changes: scores are comparable only within
one version), the metric the leaderboard shows, the reference number of shots (Occiglot's:
ARC 25, HellaSwag 10, MMLU 5, TruthfulQA 0, Belebele 5) and, for the built-in suites, where
its data lives on the hub. Items come from local JSONL (the ../shared/data/mc format: a folder
of `<lang>.jsonl`, the task named after the folder) or from the hub (occiforge.eval.hub).
Few-shot examples come from a separate split (`<folder>/fewshot/<lang>.jsonl`, or the hub
task's train split); without one they are drawn from the scored items, never the item itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from occiforge.errors import UserError
from occiforge.eval import hub
from occiforge.eval.items import Item, file_language, read_items
from occiforge.eval.prompts import PromptLanguage, words

Render = Callable[[Item, dict[str, str], PromptLanguage], tuple[str, list[str]]]
TARGET_DELIMITER = " "  # between context and choice, as lm-eval's default
FEWSHOT_DELIMITER = "\n\n"  # between examples, as lm-eval's default
LETTERS = "ABCDEFGHIJ"


def qa(item: Item, w: dict[str, str], prompt: PromptLanguage) -> tuple[str, list[str]]:
    """`[context]\\nQuestion: q\\nAnswer:` with the choices as continuations (lm-eval's ARC form)."""
    parts = [item.context] if item.context else []
    if item.question:
        parts.append(f"{w['question']}: {item.question}")
    return "\n".join(parts) + f"\n{w['answer']}:", list(item.choices)


def completion(item: Item, w: dict[str, str], prompt: PromptLanguage) -> tuple[str, list[str]]:
    """The context alone, continued by each choice (HellaSwag)."""
    return str(item.context or item.question), list(item.choices)


def lettered(item: Item, w: dict[str, str], prompt: PromptLanguage) -> tuple[str, list[str]]:
    """Options listed as `A. ...`, the letters scored (lm-eval's m_mmlu form)."""
    opts = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    head = f"{item.context}\n" if item.context else ""
    return f"{head}{(item.question or '').strip()}{opts}\n{w['answer']}:", list(LETTERS[: len(item.choices)])


def belebele(item: Item, w: dict[str, str], prompt: PromptLanguage) -> tuple[str, list[str]]:
    """lm-eval's Belebele prompt (`P: ... Q: ... A: ... Answer:`); native words in the native variant."""
    p, q = ("P", "Q") if prompt == "en" else (w["passage"], w["question"])
    opts = "".join(f"\n{LETTERS[i]}: {c}" for i, c in enumerate(item.choices))
    return f"{p}: {item.context}\n{q}: {(item.question or '').strip()}{opts}\n{w['answer']}:", list(LETTERS[: len(item.choices)])


TRUTHFULQA_EN = (
    "Q: What is human life expectancy in the United States?\nA: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\nA: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\nA: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\nA: I have no comment.\n\n"
    "Q: How does a telescope work?\nA: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\nA: The 1992 Olympics were held in Barcelona, Spain."
)


def truthfulqa(item: Item, w: dict[str, str], prompt: PromptLanguage) -> tuple[str, list[str]]:
    """lm-eval's okapi TruthfulQA prompt (six fixed English examples); native: a plain Q/A prompt."""
    if prompt == "en":
        return f"{TRUTHFULQA_EN}\n\nQ: {item.question}\nA:", list(item.choices)
    return qa(item, w, prompt)


def topic(item: Item, w: dict[str, str], prompt: PromptLanguage) -> tuple[str, list[str]]:
    """SIB-200: the sentence, then `Topic:` and the topic labels."""
    return f"{item.context}\n{w['topic']}:", list(item.choices)


def xcopa(item: Item, w: dict[str, str], prompt: PromptLanguage) -> tuple[str, list[str]]:
    """lm-eval's XCOPA: premise without its final stop + connector; choices start lower-case."""
    if item.question not in ("cause", "effect") or not item.context:
        raise UserError(f"{item.where}: an xcopa item needs a 'context' and 'question' of 'cause' or 'effect'")
    conn = w["because"] if item.question == "cause" else w["therefore"]
    return f"{item.context.strip()[:-1]} {conn}", [c[0].lower() + c[1:] for c in item.choices]


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    render: Render
    metric: str = "acc"  # what the leaderboard shows: acc, acc_norm or mc2
    fewshot: int = 0  # the reference number of examples
    hub: hub.HubSpec | None = None


TEMPLATES: dict[str, Template] = {t.name: t for t in [
    Template("qa", 1, qa),
    Template("demo_qa", 1, qa),
    Template("m_arc", 1, qa, "acc_norm", 25, hub.HUB["m_arc"]),
    Template("m_hellaswag", 1, completion, "acc_norm", 10, hub.HUB["m_hellaswag"]),
    Template("m_mmlu", 1, lettered, "acc", 5, hub.HUB["m_mmlu"]),
    Template("m_truthfulqa", 1, truthfulqa, "mc2", 0, hub.HUB["m_truthfulqa"]),
    Template("belebele", 1, belebele, "acc", 5, hub.HUB["belebele"]),
    Template("sib200", 1, topic, "acc", 0, hub.HUB["sib200"]),
    Template("exams", 1, qa, "acc", 0, hub.HUB["exams"]),
    Template("xcopa", 1, xcopa, "acc", 0, hub.HUB["xcopa"]),
]}
OCCIGLOT_SUITE = ("m_arc", "m_hellaswag", "m_mmlu", "m_truthfulqa", "belebele")


def template_for(name: str) -> Template:
    """The named template, or the generic question/answer one for any other local task."""
    return TEMPLATES.get(name, TEMPLATES["qa"])


@dataclass
class TaskData:
    """One task in one language: its items and where few-shot examples come from."""

    name: str
    lang: str
    template: Template
    items: list[Item]
    pool: list[Item]  # few-shot examples: a separate split, or all items of the scored one
    source: str
    same_split: bool = False  # pool is the scored split: never draw the item itself
    shots: int | None = None  # examples per prompt; None: the template's reference number
    prompt: PromptLanguage = "en"

    @property
    def fewshot(self) -> int:
        return self.template.fewshot if self.shots is None else self.shots


@dataclass(frozen=True)
class Posed:
    """An item as the model sees it: the full context (few-shot examples included) and choices."""

    item: Item
    context: str
    choices: tuple[str, ...]


def _example(item: Item, template: Template, w: dict[str, str], prompt: PromptLanguage) -> str:
    ctx, choices = template.render(item, w, prompt)
    return ctx + TARGET_DELIMITER + choices[item.answer]


def pose(task: TaskData, seed: int) -> list[Posed]:
    """Every item with `task.fewshot` examples before it, drawn per item from a seeded generator.

    The generator is seeded by (seed, task, language, item id), so the prompt of an item does not
    depend on which other items are scored, on their order, or on how ranks split the work.
    """
    shots, prompt = task.fewshot, task.prompt
    w = words(task.lang, prompt)
    pool = task.pool
    if shots and len(pool) - task.same_split < shots:
        raise UserError(f"{task.source}: {shots}-shot needs {shots} examples, the few-shot pool of {task.lang} has {len(pool)}")
    out = []
    for item in task.items:
        ctx, choices = task.template.render(item, w, prompt)
        if shots:
            rng = random.Random(f"{seed}:{task.name}:{task.lang}:{item.id}")
            picked = [ex for ex in rng.sample(pool, min(shots + 1, len(pool))) if ex != item][:shots]
            ctx = FEWSHOT_DELIMITER.join(_example(ex, task.template, w, prompt) for ex in picked) + FEWSHOT_DELIMITER + ctx
        out.append(Posed(item, ctx, tuple(choices)))
    return out


BUILTIN_LOCAL = {"demo_qa": "demo/demo_qa"}


def builtin_folder(name: str) -> Path:
    return Path(str(resources.files("occiforge") / BUILTIN_LOCAL[name]))


def load_local(path: Path, name: str | None = None, langs: list[str] | None = None, max_items: int | None = None) -> list[TaskData]:
    """A folder of `<lang>.jsonl` (task = folder name) or one JSONL file (task = its folder's name)."""
    if not path.exists():
        raise UserError(f"{path}: not found")
    files = sorted(p for p in path.glob("*.jsonl") if file_language(p)) if path.is_dir() else [path]
    if not files:
        raise UserError(f"{path}: no <lang>.jsonl files")
    name = name or (path.name if path.is_dir() else path.resolve().parent.name)
    template = template_for(name)
    by_lang: dict[str, list[Item]] = {}
    for f in files:
        for item in read_items(f):
            by_lang.setdefault(item.lang, []).append(item)
    tasks = []
    for lang in sorted(by_lang):
        if langs is not None and lang not in langs:
            continue
        shots_file = (path if path.is_dir() else path.parent) / "fewshot" / f"{lang}.jsonl"
        split = shots_file.is_file()
        pool = read_items(shots_file, lang) if split else by_lang[lang]
        tasks.append(TaskData(name, lang, template, by_lang[lang][:max_items], pool, str(path), same_split=not split))
    return tasks


def load_hub(template: Template, langs: list[str] | None, shots: int | None, max_items: int | None = None,
             dataset: str | None = None) -> list[TaskData]:
    """A built-in task's languages from the hub (the few-shot split only when examples are asked for)."""
    spec = template.hub
    if spec is None:
        raise UserError(f"task {template.name!r} has no hub definition")
    shots = template.fewshot if shots is None else shots
    out = []
    for lang in [lang for lang in spec.languages if langs is None or lang in langs]:
        items = hub.load_split(spec, lang, spec.split, dataset)
        split = bool(shots and spec.fewshot_split)
        pool = hub.load_split(spec, lang, str(spec.fewshot_split), dataset) if split else items
        out.append(TaskData(template.name, lang, template, items[:max_items], pool, f"hf:{dataset or spec.dataset}", same_split=not split))
    return out


def load_tasks(spec: str, name: str | None = None, langs: list[str] | None = None, shots: int | None = None,
               max_items: int | None = None, template: str | None = None, prompt: PromptLanguage = "en") -> list[TaskData]:
    """`builtin:<name>` (demo_qa, or a hub suite such as m_arc), `hf:<dataset id>` with a template, or a path.

    `shots` (None: the template's reference number) decides whether a hub few-shot split is loaded.
    """
    tasks = _load(spec, name, langs, shots, max_items, template)
    for task in tasks:
        task.shots, task.prompt = shots, prompt
    return tasks


def hub_dataset(spec: str, template: str | None) -> str | None:
    """The hub dataset a task reads (None: local files); an unknown built-in task, or a hub dataset
    without a template its records follow, is a UserError."""
    hubs = [k for k, t in TEMPLATES.items() if t.hub]
    if spec.startswith("builtin:"):
        key = spec.removeprefix("builtin:")
        if key in BUILTIN_LOCAL:
            return None
        if key in hubs:
            return TEMPLATES[key].hub.dataset  # type: ignore[union-attr]
        raise UserError(f"{spec}: unknown built-in task (known: {', '.join(sorted([*BUILTIN_LOCAL, *hubs]))})")
    if spec.startswith("hf:"):
        if template not in hubs:
            raise UserError(f"{spec}: name the template its records follow (one of {', '.join(hubs)})")
        return spec.removeprefix("hf:")
    return None


def _load(spec: str, name: str | None, langs: list[str] | None, shots: int | None,
          max_items: int | None, template: str | None) -> list[TaskData]:
    dataset = hub_dataset(spec, template)
    if spec.startswith("builtin:"):
        key = spec.removeprefix("builtin:")
        if dataset is None:
            return load_local(builtin_folder(key), name or key, langs, max_items)
        return _renamed(load_hub(TEMPLATES[key], langs, shots, max_items), name)
    if dataset is not None:
        return _renamed(load_hub(TEMPLATES[template], langs, shots, max_items, dataset), name)  # type: ignore[index]
    tasks = load_local(Path(spec), name, langs, max_items)
    if template is not None:
        for task in tasks:
            task.template = template_for(template)
    return tasks


def _renamed(tasks: list[TaskData], name: str | None) -> list[TaskData]:
    for task in tasks:
        task.name = name or task.name
    return tasks

