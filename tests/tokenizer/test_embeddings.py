"""Embedding rows for added tokens: random / mean / decomposition, old rows untouched."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from occiforge.errors import UserError
from occiforge.tokenizer.embeddings import init_new_embeddings, new_rows

RECORD = {"base_vocab_size": 20, "added": [{"id": 20, "pieces": [3, 5]}, {"id": 21, "pieces": [7, 8, 9]}]}


def _model(tied: bool, vocab: int = 20) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      intermediate_size=16, max_position_embeddings=16, tie_word_embeddings=tied, initializer_range=0.02)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # trained-looking rows, far from the random init scale
        model.get_input_embeddings().weight.normal_(0.5, 1.0)
        if not tied:
            model.get_output_embeddings().weight.normal_(-0.5, 1.0)
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_decomposition_is_the_mean_of_the_pieces(tied: bool):
    model = _model(tied)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    init_new_embeddings(model, RECORD, "decomposition")
    inp, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert inp.shape[0] == out.shape[0] == 22 and model.config.vocab_size == 22
    assert torch.equal(inp[:20], old_in) and torch.equal(out[:20], old_out)  # ids stay stable
    assert torch.allclose(inp[20], old_in[[3, 5]].mean(0)) and torch.allclose(inp[21], old_in[[7, 8, 9]].mean(0))
    assert torch.allclose(out[21], old_out[[7, 8, 9]].mean(0))
    assert (inp.data_ptr() == out.data_ptr()) == tied


def test_mean_and_random():
    model = _model(tied=False)
    old_in = model.get_input_embeddings().weight.detach().clone()
    init_new_embeddings(model, RECORD, "mean")
    assert torch.allclose(model.get_input_embeddings().weight[20:], old_in.mean(0).expand(2, -1))
    model = _model(tied=True)
    init_new_embeddings(model, {**RECORD, "init": "random"})  # the record's init is the default
    rows = model.get_input_embeddings().weight[20:]
    assert rows.abs().max() < 0.2 and rows.std() > 0.005  # N(0, 0.02), not copies of old rows


def test_padded_embeddings_are_reused_not_grown():
    model = _model(tied=True, vocab=24)  # 20 real tokens + 4 padding rows
    init_new_embeddings(model, RECORD, "decomposition")
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == 24 and torch.allclose(weight[20], weight[[3, 5]].mean(0))


def test_bad_pieces_and_method():
    weight = torch.ones(4, 2)
    with pytest.raises(UserError, match="pieces"):
        new_rows(weight, 4, [[1, 9]], "decomposition", 0.02)
    with pytest.raises(UserError, match="unknown init"):
        new_rows(weight, 4, [[1]], "zeros", 0.02)
