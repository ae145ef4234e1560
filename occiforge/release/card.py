"""The model card (`README.md`): huggingface_hub metadata plus a Jinja2-rendered body.

Metadata (`ModelCardData`): languages, license, base model, tags, Hub datasets where the data
came from the Hub, and a `model-index` with every evaluation number exactly as
`eval/<model>/results.json` holds it. The body (templates/card.md.j2) is built from the same facts
(`occiforge.release.facts`): nothing on the card is a default that looks like a result.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from occiforge.languages import get as get_language
from occiforge.languages import is_known

KIND_TEXT = {
    "base": "a base language model trained from scratch",
    "cpt": "a language model made by continued pre-training",
    "joint": "a language model made by joint continued pre-training on several languages",
    "sft": "an instruction-tuned language model",
    "merge": "a merged language model",
    "moe": "a mixture-of-experts language model",
}
PROMPTS = {"de": "Die Hauptstadt von Frankreich ist", "fr": "La capitale de l'Allemagne est",
           "es": "La capital de Francia es", "it": "La capitale della Francia è"}


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:,}" if isinstance(v, int) else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _interval(v: float, se: float | None) -> str:
    return _pct(v) if se is None else f"{100 * v:.1f} ± {100 * 1.959963984540054 * se:.1f}%"


def _langname(code: str | None) -> str:
    return get_language(code).name if code and is_known(code) else str(code)


def _duration(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"


def _env() -> Any:
    from jinja2 import Environment, StrictUndefined

    env = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters.update(num=_num, pct=_pct, interval=_interval, langname=_langname, duration=_duration,
                       signed=lambda v: f"{v:+.4f}",
                       mixture=lambda m: " · ".join(f"{_langname(k)} {100 * w / sum(m.values()):.0f}%" for k, w in m.items() if w > 0))
    return env


def card_data(f: dict[str, Any], license_id: str, repo_id: str, base_model: str | None) -> Any:
    """The card's YAML metadata; `model-index` holds every evaluation number unrounded."""
    from huggingface_hub import EvalResult, ModelCardData

    results = []
    for r in (f["eval"] or {}).get("bpb", []):
        results.append(EvalResult(task_type="text-generation", dataset_type="heldout", dataset_name=f"held-out text ({r['lang']})",
                                  dataset_config=r["lang"], dataset_split="heldout", metric_type="bits_per_byte",
                                  metric_name=f"bits per byte ({r['lang']})", metric_value=r["value"]))
    for r in (f["eval"] or {}).get("mc", []):
        results.append(EvalResult(task_type="multiple-choice", dataset_type=r["task"], dataset_name=f"{r['task']} ({r['lang']})",
                                  dataset_config=r["lang"], metric_type=r["metric"], metric_name=f"{r['metric']} ({r['lang']})",
                                  metric_value=r["value"], metric_config=f"{r['fewshot']}-shot" if r["fewshot"] is not None else None))
    langs = f["languages"]
    tags = ["occiforge", f["kind"], *(["multilingual"] if len(langs) > 1 else [])]
    return ModelCardData(model_name=repo_id, language=langs or None, license=license_id, library_name="transformers",
                         pipeline_tag="text-generation", base_model=base_model, tags=tags, datasets=f["datasets"] or None,
                         eval_results=results or None)


def tokenizer_text(tok: dict[str, Any]) -> str:
    size = f"{tok['vocab_size']:,} tokens" if tok.get("vocab_size") else "vocabulary size not recorded"
    if ext := tok.get("extension"):
        langs = ", ".join(_langname(lang) for lang in ext["languages"]) or "no language"
        return (f"`{ext['base']}` extended with {ext['new_tokens']:,} new tokens for {langs} ({size} in all); "
                "the table shows fertility before and after the extension.")
    if tok.get("pretrained"):
        return f"The pretrained tokenizer `{tok['pretrained']}` ({size}), not extended."
    return f"A byte-level {tok.get('kind', 'bpe').upper()} tokenizer trained on this run's curated data ({size}), not an extension of another."


def made_text(f: dict[str, Any]) -> str:
    init = f["init"]
    if init in (None, "scratch"):
        return "trained from scratch"
    if f["target"]:
        replay = f" with {100 * (f['replay'] or 0):.0f}% {_langname(f['replay_language'])} replay" if f["replay"] else " without replay"
        return f"continued from `{init}` on {_langname(f['target'])}{replay}"
    if f["kind"] == "sft":
        return f"instruction-tuned from `{init}`"
    return f"made by the {f['stage']} stage from `{init}`"


def render(f: dict[str, Any], license_id: str, repo_id: str, base_model: str | None) -> Any:
    """The whole card as a huggingface_hub `ModelCard`."""
    from huggingface_hub import ModelCard

    data = card_data(f, license_id, repo_id, base_model)
    template = _env().from_string((files("occiforge.release") / "templates" / "card.md.j2").read_text(encoding="utf-8"))
    target = f["target"] or next(iter(f["languages"]), "en")
    text = template.render(card_data=data.to_yaml(), f=f, t=f["training"], title=repo_id.split("/")[-1], repo_id=repo_id,
                           kind_text=KIND_TEXT.get(f["kind"], "a language model"), made=made_text(f),
                           tokenizer_text=tokenizer_text(f["tokenizer"]), prompt=PROMPTS.get(target, "The capital of France is"))
    return ModelCard(text)
