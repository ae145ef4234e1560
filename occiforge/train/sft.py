"""What instruction tuning adds to a model: its conversations, the chat tokens' rows, sample answers.

The conversations stage wrote the tokens (`occiforge/train/conversations.py`); here they are
opened per language, the rows of the tokens the chat template added (`<|im_start|>`, `<|im_end|>`)
are initialised, and after training the model answers one held-out prompt per language through
`tokenizer.apply_chat_template` + `model.generate` (`samples.json`, read by the report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occiforge.chat import IM_END, IM_START, Messages, reply, stop_ids
from occiforge.io import open_token_docs
from occiforge.lm import load_tokenizer
from occiforge.recipe import PlannedModel
from occiforge.train.conversations import HELDOUT_MESSAGES, source_key
from occiforge.train.embeddings import new_rows
from occiforge.train.packing import Docs

SAMPLES_FILE = "samples.json"


def chat_tokenizer(conv_dir: Path, pm: PlannedModel) -> Any:
    return load_tokenizer(conv_dir / f"tokenizer-{pm.chat_template}")


def chat_docs(conv_dir: Path, pm: PlannedModel, split: str = "train") -> dict[str, Docs]:
    """Per language, the conversations of every source of the model, one after the other."""
    parts: dict[str, list[tuple[Any, Any, Any]]] = {}
    for src in pm.chat or []:
        key = source_key(src, pm.chat_template or "chatml")
        for lang in src.languages:
            parts.setdefault(lang, []).append(open_token_docs(conv_dir / key / lang / split))
    out = {}
    for lang, items in parts.items():
        ids = np.concatenate([np.asarray(i) for i, _, _ in items])
        shift = np.cumsum([0] + [len(i) for i, _, _ in items[:-1]])
        offsets = np.concatenate([[0]] + [o[1:] + s for (_, o, _), s in zip(items, shift)])
        targets = np.concatenate([np.asarray(t) if t is not None else np.ones(len(i), np.uint8) for i, _, t in items])
        out[lang] = Docs(ids, offsets.astype(np.int64), targets)
    return out


@torch.no_grad()
def add_chat_rows(model: Any, base_tok: Any, chat_tok: Any) -> None:
    """Grow the embeddings to the chat tokenizer and start each added token from the old token that
    does its job: `<|im_end|>` from EOS (an answer ends where a document did), `<|im_start|>` from BOS
    (a segment starts); any other added token from the mean of its text's pieces. Rows in the model's
    own space, not random ones it would first have to learn to ignore. The two ChatML tokens from
    their pieces (`<`, `|`, `im`, ...) started nearly alike (cosine 0.86 on the demo's model, against
    0.04 between ordinary tokens) and at half the usual norm. Old rows are untouched."""
    base, total = len(base_tok), len(chat_tok)
    if total <= base:
        return
    if model.get_input_embeddings().num_embeddings < total:
        model.resize_token_embeddings(total, mean_resizing=False)
    vocab = chat_tok.get_vocab()
    added = sorted((i, t) for t, i in vocab.items() if i >= base)
    ids = torch.tensor([i for i, _ in added])
    analog = {IM_END: base_tok.eos_token_id, IM_START: base_tok.bos_token_id}
    pieces = [[analog[t]] if analog.get(t) is not None and analog[t] < base
              else [p for p in base_tok(t, add_special_tokens=False)["input_ids"] if p < base] or [base_tok.eos_token_id]
              for _, t in added]
    std = float(getattr(model.config, "initializer_range", 0.02))
    inp = model.get_input_embeddings().weight
    inp[ids] = new_rows(inp, base, pieces, "decomposition", std).to(inp.dtype)
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != inp.data_ptr():
        out.weight[ids] = new_rows(out.weight, base, pieces, "decomposition", std).to(out.weight.dtype)
    model.config.vocab_size = model.get_input_embeddings().num_embeddings


def set_chat_generation(model: Any, chat_tok: Any) -> None:
    """A saved instruct model stops generating at the end of its turn (and wherever it stopped before)."""
    model.generation_config.eos_token_id = stop_ids(chat_tok, model)
    model.generation_config.pad_token_id = chat_tok.pad_token_id


def sample_prompt(convs: list[Messages]) -> tuple[Messages, str] | None:
    """(prompt, reference answer) of the first conversation with a user turn before an assistant turn (one that
    opens with the assistant has nothing to prompt with), or None."""
    for messages in convs:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        if any(m["role"] == "user" for m in messages[:last]):
            return messages[:last], messages[last]["content"]
    return None


def write_samples(folder: Path, conv_dir: Path, pm: PlannedModel, max_new_tokens: int = 48) -> list[dict[str, Any]]:
    """One answer per language of the saved model to its first held-out prompt, beside the reference."""
    from occiforge.lm import load_causal_lm

    model, tok = load_causal_lm(folder).eval(), load_tokenizer(folder)
    samples = []
    for src in pm.chat or []:
        key = source_key(src, pm.chat_template or "chatml")
        for lang in src.languages:
            path = conv_dir / key / lang / HELDOUT_MESSAGES
            convs = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
            if lang in {s["lang"] for s in samples} or (found := sample_prompt(convs)) is None:
                continue
            prompt, reference = found
            samples.append({"lang": lang, "prompt": prompt, "reference": reference,
                            "answer": reply(model, tok, prompt, max_new_tokens)})
    (folder / SAMPLES_FILE).write_text(json.dumps(samples, ensure_ascii=False, indent=1), encoding="utf-8")
    return samples
