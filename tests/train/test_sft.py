"""Instruction tuning: ChatML in the tokenizer, assistant-only targets, packed conversations that
never see each other, and the loss checked against a hand-computed reference on 3 conversations."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from occiforge.chat import (
    CHATML,
    IM_END,
    IM_START,
    check_messages,
    encode,
    end_of_turn_id,
    fit,
    iter_records,
    stop_ids,
    to_messages,
    with_template,
)
from occiforge.errors import UserError
from occiforge.loop import LoopSpec, train
from occiforge.recipe import OptimConfig, TokenizerConfig
from occiforge.tokenizer.train import sample_texts, save_hf, train_tokenizer
from occiforge.train.packing import Docs, PackedMixture
from occiforge.train.sft import add_chat_rows, sample_prompt
from tests.conftest import REPO

THREE = [
    [{"role": "user", "content": "What is a volcano?"}, {"role": "assistant", "content": "A mountain that can erupt."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Wie geht es?"},
     {"role": "assistant", "content": "Gut, danke."}, {"role": "user", "content": "Und dir?"},
     {"role": "assistant", "content": "Auch gut."}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory):
    """(base, chat): a 500-token BPE on demo text, and the same with ChatML added."""
    texts = {lang: [json.loads(x)["text"] for x in (REPO / "occiforge/demo/corpus" / f"{lang}.jsonl").open()] for lang in ("en", "de")}
    cfg = TokenizerConfig(vocab_size=500)
    folder = tmp_path_factory.mktemp("tok")
    save_hf(train_tokenizer(sample_texts(texts, cfg), cfg), folder)
    from occiforge.lm import load_tokenizer

    return load_tokenizer(folder), with_template(load_tokenizer(folder), "chatml", "test")


def _model(vocab: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=256, tie_word_embeddings=True))


def _by_hand(tok, conv: list[dict[str, str]]) -> tuple[list[int], list[bool]]:
    """ChatML written out turn by turn: each segment tokenized on its own, targets = answer + <|im_end|>."""
    segs: list[tuple[str, bool]] = [(tok.bos_token, False)]
    for m in conv:
        segs.append((f"{IM_START}{m['role']}\n", False))
        segs.append((f"{m['content']}{IM_END}", m["role"] == "assistant"))
        segs.append(("\n", False))
    ids, mask = [], []
    for text, target in segs:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [target] * len(piece)
    return ids, mask


def test_chatml_is_stored_in_the_tokenizer_as_special_tokens(tokenizers, tmp_path: Path):
    base, chat = tokenizers
    assert len(chat) == len(base) + 2 and chat.chat_template == CHATML
    chat.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    ids = again.apply_chat_template(THREE[0], add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert again.decode(ids).startswith(f"{again.bos_token}{IM_START}user\n") and again.decode(ids).endswith(f"{IM_START}assistant\n")
    assert len(again(IM_END, add_special_tokens=False)["input_ids"]) == 1  # one token, never split


def test_targets_are_the_assistant_turns_and_their_end_token(tokenizers):
    _, chat = tokenizers
    for conv in THREE:
        ids, mask = encode(chat, conv, "test")
        assert (ids, mask) == _by_hand(chat, conv)
        answers = "".join(m["content"] + IM_END for m in conv if m["role"] == "assistant")
        assert chat.decode([i for i, m in zip(ids, mask) if m]) == answers


def test_reference_loss_on_three_packed_conversations(tokenizers, tmp_path: Path):
    """The loop's loss on one row packing the 3 conversations = sum of the assistant tokens' NLL,
    each conversation scored alone, over their count; and packing changes no logit."""
    _, chat = tokenizers
    model = _model(len(chat))
    encoded = [_by_hand(chat, c) for c in THREE]
    nll, count, alone = 0.0, 0, []
    with torch.no_grad():
        for ids, mask in encoded:
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            alone.append(logits)
            logp = F.log_softmax(logits.double(), -1)
            for t in range(1, len(ids)):
                if mask[t]:
                    nll -= float(logp[t - 1, ids[t]])
                    count += 1
    reference = nll / count
    flat = np.concatenate([np.asarray(i, np.uint16) for i, _ in encoded])
    docs = Docs(flat, np.cumsum([0] + [len(i) for i, _ in encoded]).astype(np.int64),
                np.concatenate([np.asarray(m, np.uint8) for _, m in encoded]))
    window = sum(len(i) for i, _ in encoded) + 3
    batch = PackedMixture({"en": docs}, {"en": 1.0}, window, seed=0, total_rows=1, pad_id=0, conversations=True).batch(range(1))
    assert int((batch["labels"] != -100).sum()) == count
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
    for ids, logits in zip((e[0] for e in encoded), alone):  # each conversation sees only itself
        at = next(s for s in range(window) if batch["input_ids"][0, s : s + len(ids)].tolist() == ids)
        assert torch.allclose(packed[at : at + len(ids)], logits, atol=1e-5)
    spec = LoopSpec(steps=1, lr=1e-3, optim=OptimConfig(warmup_steps=0), grad_accum=1, precision="fp32",
                    save_every=100, log_every=1, fingerprint="sft-ref")
    history = train(model, lambda step, micro: dict(batch), spec, tmp_path / "ckpt")
    assert history[0]["loss"] == pytest.approx(reference, abs=1e-5)


def test_chat_rows_start_from_eos_and_bos_and_old_rows_stay(tokenizers):
    base, chat = tokenizers
    model = _model(len(base))
    before = model.get_input_embeddings().weight.detach().clone()
    add_chat_rows(model, base, chat)
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == len(chat) and torch.equal(weight[: len(base)], before)
    assert torch.equal(weight[chat.convert_tokens_to_ids(IM_END)], before[base.eos_token_id])
    assert torch.equal(weight[chat.convert_tokens_to_ids(IM_START)], before[base.bos_token_id])
    assert model.lm_head.weight.data_ptr() == weight.data_ptr()  # still tied


@pytest.mark.parametrize("messages, error", [
    ([{"role": "user", "content": "Hi"}], "no assistant turn"),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}], "assistant turn is empty"),
    ([{"role": "robot", "content": "Hi"}], "role: system|user|assistant"),
    ([], "no messages"),
])
def test_bad_conversations_are_one_line_errors(messages, error):
    with pytest.raises(UserError, match=error):
        check_messages(messages, "models.chat: de.jsonl record 3")


def test_instruction_response_records_read_as_one_exchange():
    assert to_messages({"instruction": "Q?", "response": "A."}, "messages", "x") == [
        {"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]


def test_a_tokenizer_without_a_template_is_refused_when_asked_for_its_own(tokenizers):
    base, _ = tokenizers
    with pytest.raises(UserError, match="models.chat: tokenizer has no chat template; use chat_template: chatml"):
        with_template(base, "tokenizer", "models.chat: tokenizer")


def test_the_end_of_turn_token_is_read_from_the_template(tokenizers):
    base, chat = tokenizers
    assert end_of_turn_id(chat) == chat.convert_tokens_to_ids(IM_END)
    gemma = copy.deepcopy(base)  # another template whose turns end with their own special token
    gemma.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    gemma.chat_template = ("{% for m in messages %}{{ '<start_of_turn>' + m['role'] + '\n' + m['content'] + '<end_of_turn>\n' }}"
                           "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>assistant\n' }}{% endif %}")
    eot = gemma.convert_tokens_to_ids("<end_of_turn>")
    assert end_of_turn_id(gemma) == eot
    model = _model(len(gemma))
    model.generation_config.eos_token_id = [7]  # what the model stopped at before stays a stop
    assert stop_ids(gemma, model) == sorted({eot, gemma.eos_token_id, 7})
    plain = copy.deepcopy(base)  # turns end with EOS itself
    plain.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}"
    assert end_of_turn_id(plain) == base.eos_token_id


def test_a_conversation_opening_with_the_answer_does_not_train_on_the_header(tokenizers):
    _, chat = tokenizers
    ids, mask = encode(chat, [{"role": "assistant", "content": "Hello there."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Fine."}], "test")
    assert chat.decode([i for i, m in zip(ids, mask) if m]) == f"Hello there.{IM_END}Fine.{IM_END}"


def test_the_sample_answer_prompts_with_the_first_conversation_that_has_a_user_turn():
    opening = [{"role": "assistant", "content": "Hello, how can I help?"}]  # nothing to prompt with
    asked = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert sample_prompt([opening, asked]) == (asked[:2], "Hello")
    assert sample_prompt([opening, opening[::-1] + [{"role": "user", "content": "?"}]]) is None


def test_chat_history_drops_whole_old_exchanges_to_fit(tokenizers):
    _, chat = tokenizers
    system = [{"role": "system", "content": "Be brief."}]
    turns = [{"role": r, "content": f"{r} says something rather long number {i}"} for i in range(3) for r in ("user", "assistant")]
    messages = system + turns + [{"role": "user", "content": "last"}]
    size = lambda m: len(chat.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])  # noqa: E731
    assert fit(chat, messages, 1, None) == messages
    short = fit(chat, messages, 1, size(system + turns[4:] + messages[-1:]))
    assert short == system + turns[4:] + messages[-1:]  # the system prompt and the newest exchange stay
    assert fit(chat, messages, 1, 1) == system + messages[-1:]  # never the question itself


def test_source_weights_are_per_language_and_one_conversation_is_held_out():
    from occiforge.recipe.models import SftModel

    src = {"path": "builtin:demo", "languages": ["de"]}
    both = SftModel(init="base", data=[{**src, "languages": ["de", "en"]}, {**src, "path": "/x"}])  # one pass over de's two
    assert both.mixture() == {"de": 1.0, "en": 1.0}  # de's two sources share its one weight, not twice en's
    with pytest.raises(ValueError, match="de is in several sources with different weights"):
        SftModel(init="base", data=[src, {**src, "path": "/x", "weight": 9}])
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        SftModel(init="base", data=[{**src, "heldout": 0}])


def test_a_dataset_without_a_language_column_is_one_language_only(tmp_path: Path):
    pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    folder.mkdir()
    rec = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    (folder / "train.jsonl").write_text("\n".join(json.dumps(rec) for _ in range(3)))
    assert len(list(iter_records(f"hf:{folder}", "de", "train", "lang", single=True))) == 3
    with pytest.raises(UserError, match="no 'lang' column"):
        list(iter_records(f"hf:{folder}", "de", "train", "lang", single=False))
    with pytest.raises(UserError, match="cannot load"):
        list(iter_records(f"hf:{tmp_path / 'missing'}", "de", "train", "lang"))


def test_unreadable_bytes_are_one_line_naming_the_file(tmp_path: Path):
    import gzip

    from occiforge.io import iter_jsonl_at

    latin = tmp_path / "de.jsonl"
    latin.write_bytes('{"text": "ok"}\n{"text": "Gr\u00fc\u00dfe"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match=r"de.jsonl:2: not UTF-8"):
        list(iter_jsonl_at(latin))
    cut = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress("".join(f'{{"text": "line {i * 7919 % 10007}"}}\n' for i in range(2000)).encode())
    cut.write_bytes(whole[: len(whole) // 2])  # a download cut off half-way
    with pytest.raises(UserError, match=r"cut.jsonl.gz: cannot read after line \d+"):
        list(iter_jsonl_at(cut))


def test_an_init_whose_tokenizer_extends_the_runs_is_accepted(tokenizers, tmp_path: Path):
    from occiforge.train.model import preflight_vocab

    base, chat = tokenizers
    folder = tmp_path / "instruct"  # an instruct model (base + ChatML) started from with the base tokenizer
    _model(len(chat)).save_pretrained(folder)
    chat.save_pretrained(folder)
    preflight_vocab([str(folder)], base, set(), None)


def test_a_tokenizer_without_eos_whose_turns_end_plainly_is_refused(tokenizers):
    base, _ = tokenizers
    plain = copy.deepcopy(base)
    plain.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    plain.eos_token = None
    with pytest.raises(UserError, match="no EOS token"):
        end_of_turn_id(plain)
