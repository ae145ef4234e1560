"""A tiny causal LM folder (random Llama + a byte-level BPE trained here), built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "occiforge" / "demo"
LANGS = ("en", "de", "fr", "es", "it")


def train_bpe(texts: list[str], vocab_size: int = 500) -> PreTrainedTokenizerFast:
    """Byte-level BPE that prepends <s>, like the tokenizers occiforge trains."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def build_tiny_model(folder: Path, max_positions: int = 200, seed: int = 0, texts: list[str] | None = None,
                     hidden: int = 32, layers: int = 2, vocab_size: int = 500) -> Path:
    """Save a random tiny Llama and its tokenizer as a HF folder (loadable by lm-eval's `hf`).

    A large init range makes the model's choices far apart, so ties cannot hide a wrong score.
    """
    if texts is None:
        texts = []
        for lang in LANGS:
            texts += [json.loads(line)["text"] for line in (DEMO / "corpus" / f"{lang}.jsonl").open(encoding="utf-8")]
            texts += (DEMO / "demo_qa" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()
    tok = train_bpe(texts, vocab_size)
    tok.save_pretrained(str(folder))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=2 * hidden, max_position_embeddings=max_positions,
                      initializer_range=0.3, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and steadily when the machine's other core is busy."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
