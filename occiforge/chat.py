"""Conversations: reading them, the chat template, and assistant-only targets.

The ChatML template (Occiglot's choice for its instruct models) is stored in the tokenizer, with
`<|im_start|>` and `<|im_end|>` added as special tokens, so a saved model answers through
`tokenizer.apply_chat_template` + `model.generate` like any HF chat model. Assistant targets are
found from the rendered text, not from template markers: turn i covers the characters between
`render(messages[:i], add_generation_prompt=True)` and `render(messages[:i+1])`, so any template
that renders a conversation as the concatenation of its turns works, the tokenizer's own included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from occiforge.errors import UserError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ROLES = ("system", "user", "assistant")
# BOS first where the tokenizer has one: every pre-training document started with it
CHATML = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
DEMO_SFT = Path(__file__).resolve().parent / "demo" / "sft"

Messages = list[dict[str, str]]


def with_template(tok: Any, template: str, where: str) -> Any:
    """`tok` ready for conversations: `chatml` adds the two special tokens (new ids after every old
    one) and the template; `tokenizer` keeps the tokenizer's own template, an error where it has none
    (`where` names the tokenizer).
    End of a turn is end of generation: the saved generation config stops there."""
    if template == "tokenizer":
        if not getattr(tok, "chat_template", None):
            raise UserError(f"{where} has no chat template; use chat_template: chatml")
        return tok
    tok.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
    tok.chat_template = CHATML
    return tok


def end_of_turn_id(tok: Any) -> int:
    """The token that ends an assistant turn, read from the template: the first token it renders after
    an answer's text (`<|im_end|>` for ChatML, `<end_of_turn>`, `<|eot_id|>`...) where that is a
    special token, else EOS."""
    try:
        after = _around_answer(tok, [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}])[1].lstrip()
    except Exception:  # noqa: BLE001 - a template that cannot render the probe ends turns at EOS
        after = ""
    ids = tok(after, add_special_tokens=False)["input_ids"] if after else []
    if ids and ids[0] in set(tok.all_special_ids):
        return int(ids[0])
    if tok.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token and its chat template ends a turn with no special token: "
                        "nothing would stop an answer")
    return int(tok.eos_token_id)


def _around_answer(tok: Any, messages: Messages) -> tuple[str, str]:
    """The rendered conversation before and after the text of its last message (found through a
    sentinel in its place, so any template that copies the text verbatim works)."""
    text = tok.apply_chat_template([*messages[:-1], {**messages[-1], "content": "\x00"}], tokenize=False)
    at = text.rindex("\x00")
    return text[:at], text[at + 1:]


def stop_ids(tok: Any, model: Any) -> list[int]:
    """Every id that ends an answer: the end of turn, EOS, and what the model's generation config lists."""
    known = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = {end_of_turn_id(tok), *([known] if isinstance(known, int) else known or [])}
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return sorted(ids)


def check_messages(messages: Any, where: str) -> Messages:
    """Messages as a list of {role, content} with at least one assistant turn, or a one-line error."""
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: no messages")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise UserError(f"{where}: a message must be {{role: system|user|assistant, content: text}}, got {str(m)[:80]!r}")
    answers = [m for m in messages if m["role"] == "assistant"]
    if not any(m["content"].strip() for m in answers):
        raise UserError(f"{where}: the conversation's assistant turn is empty" if answers else
                        f"{where}: the conversation has no assistant turn")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def to_messages(record: dict[str, Any], key: str, where: str) -> Messages:
    """A record's conversation: `key` (messages), or instruction/response as one exchange."""
    if key in record:
        return check_messages(record[key], where)
    if "instruction" in record and "response" in record:
        return check_messages([{"role": "user", "content": record["instruction"]},
                               {"role": "assistant", "content": record["response"]}], where)
    raise UserError(f"{where}: no {key!r} (nor instruction/response) in the record")


def iter_records(path: str, lang: str, split: str, lang_key: str, single: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) of one language from a source: builtin:demo, a folder of <lang>.jsonl, or hf:<id>.
    A dataset without a `lang_key` column is all `lang`, which only a `single`-language source may say."""
    if path.startswith("hf:"):
        from occiforge.io import load_hf_dataset

        ds = load_hf_dataset(path[3:], split)
        if lang_key not in (ds.column_names or []) and not single:
            raise UserError(f"{path}: no {lang_key!r} column to tell its languages apart; give lang_key, or one language per source")
        for i, rec in enumerate(ds):
            if rec.get(lang_key, lang) == lang:
                yield f"{path} row {i}", rec
        return
    from occiforge.io import iter_jsonl_at

    file = source_file(path, lang)
    if not file.is_file():
        raise UserError(f"{path}: no {lang}.jsonl in {file.parent}")
    for where, rec in iter_jsonl_at(file):
        if not isinstance(rec, dict):
            raise UserError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")
        if rec.get(lang_key, lang) == lang:
            yield where, rec


def source_file(path: str, lang: str) -> Path:
    """The JSONL file of one language of a local source (builtin:demo or a folder)."""
    return (DEMO_SFT if path == "builtin:demo" else Path(path)) / f"{lang}.jsonl"


def encode(tok: Any, messages: Messages, where: str) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered conversation and, per token, whether it is an assistant target
    (its content and the token that ends its turn)."""
    full = tok.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        if i:
            start = len(tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True))
        else:  # the conversation opens with the answer: its header is still a prompt (HF renders no empty one)
            start = len(_around_answer(tok, [m])[0])
        turn = tok.apply_chat_template(messages[: i + 1], tokenize=False)
        if not full.startswith(turn):
            raise UserError(f"{where}: the chat template does not render a conversation turn by turn")
        spans.append((start, len(turn.rstrip())))  # the newline after the end-of-turn token is not a target
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    mask = [any(s <= a < e for s, e in spans) for a, _ in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def reply(model: Any, tok: Any, messages: Messages, max_new_tokens: int = 64) -> str:
    """The model's next assistant turn (greedy), through the tokenizer's chat template."""
    import torch

    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = {k: v.to(model.device) for k, v in ids.items()}
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_ids(tok, model), pad_token_id=tok.pad_token_id)
    return str(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)).strip()


def repl(model_path: str, max_new_tokens: int = 128, system: str | None = None) -> int:
    """`occiforge chat --model PATH`: a terminal conversation with a saved model (EOF or /exit ends it,
    /reset starts over). Lines come from stdin, so a conversation can also be piped in."""
    import sys

    from occiforge.lm import (
        check_available,
        check_vocab,
        load_causal_lm,
        load_tokenizer,
    )

    check_available(model_path, "chat --model")  # offline or mistyped: one line now, not a minute of Hub retries
    if (folder := Path(model_path).expanduser()).is_dir() and not (folder / "config.json").is_file():
        raise UserError(f"chat --model: {model_path} is not a model folder (no config.json)")
    tok = load_tokenizer(model_path)
    if not getattr(tok, "chat_template", None):
        raise UserError(f"{model_path}: the tokenizer has no chat template (train a `kind: sft` model, or use an instruct model)")
    model = load_causal_lm(model_path).eval()
    check_vocab(model, tok, model_path)
    limit = getattr(model.config, "max_position_embeddings", None)
    budget = limit - max_new_tokens if limit else None  # prompt tokens the answer leaves room for
    if budget is not None and budget < 1:
        raise UserError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the model's {limit} positions")
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            return 0
        if line.strip() == "/reset":
            messages = list(start)
            continue
        if not line.strip():
            continue
        turn = {"role": "user", "content": line.strip()}
        if budget is not None and (n := prompt_tokens(tok, [*start, turn])) > budget:  # before `fit` drops history
            print(f"occiforge: that message makes a prompt of {n} tokens; this model has room for {budget} "
                  f"({limit} positions - {max_new_tokens} for the answer): say it shorter", file=sys.stderr)
            if not interactive:
                print(flush=True)  # piped: still one line out for each line in
            continue
        messages = fit(tok, [*messages, turn], len(start), budget)
        answer = reply(model, tok, messages, max_new_tokens)
        messages.append({"role": "assistant", "content": answer})
        # piped: one answer a line, its own line breaks written as \n
        print(f"model> {answer}" if interactive else answer.replace("\n", "\\n"), flush=True)


def prompt_tokens(tok: Any, messages: Messages) -> int:
    """Tokens of the prompt `messages` make, the assistant's header included."""
    return len(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])


def fit(tok: Any, messages: Messages, keep: int, budget: int | None) -> Messages:
    """The conversation without its oldest exchanges (the first `keep` messages, the system prompt,
    stay) until its prompt has at most `budget` tokens; the last message always stays."""
    while budget is not None and len(messages) > keep + 1 and prompt_tokens(tok, messages) > budget:
        cut = keep + 1
        while cut < len(messages) - 1 and messages[cut]["role"] != "user":  # drop a whole exchange
            cut += 1
        messages = messages[:keep] + messages[cut:]
    return messages
