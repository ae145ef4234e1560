"""Embedding rows for added tokens: random / mean / decomposition (plain and calibrated), old rows untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from occiforge.errors import UserError
from occiforge.train.embeddings import (TIED_SCALES, best_scale, centre, hidden_states, init_new_embeddings, new_rows,
                                            sample_nll, sample_windows)

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
    init_new_embeddings(model, RECORD, "random")
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


def _sample() -> list[torch.Tensor]:
    return [torch.tensor([[1, 20, 4, 21, 6, 20], [21, 2, 20, 9, 21, 3]])]  # text in the extended vocabulary


def test_calibrated_output_rows_are_centred_and_scaled_decomposition():
    model = _model(tied=False)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    init_new_embeddings(model, RECORD, "decomposition-calibrated", sample=_sample())
    inp, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert torch.equal(inp[:20], old_in) and torch.equal(out[:20], old_out)
    assert torch.allclose(inp[20], old_in[[3, 5]].mean(0))  # input rows: plain decomposition
    plain = torch.stack([old_out[[3, 5]].mean(0), old_out[[7, 8, 9]].mean(0)])
    states, _ = hidden_states(model, _sample())
    centred = centre(plain, states.mean(0))
    assert (plain @ states.mean(0)).abs().min() > 0.1 and (out[20:] @ states.mean(0)).abs().max() < 1e-5  # prior removed
    scale = float(out[20:].detach().norm() / centred.norm())
    assert torch.allclose(out[20:], scale * centred, atol=1e-5) and 0.05 <= scale <= 2.0


def test_best_scale_recovers_a_planted_logit_scale():
    gen = torch.Generator().manual_seed(0)
    states, old, new = torch.randn(4000, 8, generator=gen), torch.randn(30, 8, generator=gen), torch.randn(10, 8, generator=gen)
    logits = states @ torch.cat([old, 0.6 * new]).T  # the truth: new rows at 0.6 of their length
    targets = torch.multinomial(torch.softmax(logits, 1), 1, generator=gen).squeeze(1)
    assert best_scale(states, targets, old, new, torch.arange(30, 40)) == pytest.approx(0.6, abs=0.1)


def test_tied_calibration_picks_the_scale_with_the_best_sample_likelihood():
    model = _model(tied=True)
    init_new_embeddings(model, RECORD, "decomposition", sample=_sample())
    states, _ = hidden_states(model, _sample())
    centred = centre(model.get_input_embeddings().weight[20:].detach().clone(), states.mean(0))
    nll = {}
    for scale in TIED_SCALES:
        with torch.no_grad():
            model.get_input_embeddings().weight[20:] = scale * centred
        nll[scale] = sample_nll(model, _sample())
    model = _model(tied=True)
    init_new_embeddings(model, RECORD, "decomposition-calibrated", sample=_sample())
    assert torch.allclose(model.get_input_embeddings().weight[20:], min(nll, key=nll.__getitem__) * centred, atol=1e-6)
    assert len(set(nll.values())) == len(TIED_SCALES)  # the candidates do differ


def test_calibrated_decomposition_needs_text():
    with pytest.raises(UserError, match="needs training text in el"):
        init_new_embeddings(_model(tied=True), {**RECORD, "languages": ["el"]}, "decomposition-calibrated")
    model = _model(tied=True)
    init_new_embeddings(model, RECORD, "decomposition-calibrated", sample=_sample())
    assert not torch.allclose(model.get_input_embeddings().weight[20], model.get_input_embeddings().weight[[3, 5]].mean(0))


def test_sample_windows_are_evenly_spaced_and_skip_missing_languages():
    streams = {"el": np.arange(1000, dtype=np.uint16), "de": np.arange(50, dtype=np.uint16)}
    el, de = sample_windows(streams, ["el", "fi", "de"], length=100, per_language=4)
    assert el.shape == (4, 100) and el.dtype == torch.int64 and el[:, 0].tolist() == [0, 300, 600, 900]
    assert de.shape == (4, 50)  # a stream shorter than a window gives what it has
    assert sample_windows(streams, ["fi"]) == []
