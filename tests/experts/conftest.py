"""Tiny random Llamas for the experts' unit tests: a base, and experts that continue it (base + noise)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

VOCAB = 64


def tiny_tokenizer(vocab: int = VOCAB, shift: int = 0) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: <pad> <s> </s> <unk>, then w0..w(vocab-5) (`shift` renames them)."""
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i + shift}" for i in range(vocab - 4)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def tiny_llama(folder: Path, seed: int, base: Path | None = None, noise: float = 0.05, hidden: int = 32, layers: int = 2,
               vocab: int = VOCAB, tokenizer: PreTrainedTokenizerFast | None = None) -> Path:
    """A random Llama (or `base` plus Gaussian noise of std `noise`) saved with a tokenizer."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg) if base is None else LlamaForCausalLM.from_pretrained(base)
    if base is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(noise * torch.randn_like(p))
    model.save_pretrained(folder)
    (tokenizer or tiny_tokenizer(vocab)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base and three experts continued from it (same architecture, same tokenizer)."""
    root = tmp_path_factory.mktemp("family")
    base = tiny_llama(root / "base", seed=0)
    return {"base": base, **{f"e{i}": tiny_llama(root / f"e{i}", seed=i, base=base) for i in (1, 2, 3)}}
