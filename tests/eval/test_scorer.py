"""The scorer against a direct forward pass of the model, one (context, continuation) at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from occiforge.eval.metrics import aggregate, item_metrics
from occiforge.eval.scorer import Scorer, resolve_max_length
from occiforge.eval.tasks import load_tasks, pose


@pytest.fixture(scope="module")
def lm(tiny_model: Path):
    model = LlamaForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def requests() -> list[tuple[str, list[str]]]:
    posed = [p for t in load_tasks("builtin:demo_qa", langs=["en", "de"], max_items=12) for p in pose(t, 0)]
    return [(p.context, [" " + c for c in p.choices]) for p in posed]


@torch.no_grad()
def direct(model, tok, ctx: str, cont: str, max_length: int) -> float:
    """The reference, written out: lm-eval's encoding and left truncation, one sequence per choice."""
    n = len(ctx) - len(ctx.rstrip())
    if n:
        ctx, cont = ctx[:-n], ctx[-n:] + cont
    c = tok(ctx)["input_ids"]
    x = tok(ctx + cont)["input_ids"][len(c):]
    seq = (c + x)[-(max_length + 1):]
    logp = model(torch.tensor([seq[:-1]])).logits[0].log_softmax(-1)
    return sum(float(logp[len(seq) - 1 - len(x) + i, t]) for i, t in enumerate(x))


def test_prefix_sharing_matches_direct_scoring(lm, requests):
    model, tok = lm
    scorer = Scorer(model, tok, batch_size=5)
    scored = scorer.loglikelihoods(requests)
    assert scorer.share and scored.stats["rows"] == len(requests)  # one row per item, all choices in it
    for (ctx, conts), lls in zip(requests, scored.loglikelihoods, strict=True):
        for cont, ll in zip(conts, lls, strict=True):
            assert ll == pytest.approx(direct(model, tok, ctx, cont, scorer.max_length), abs=1e-4)
    assert not any(scored.truncated)


def test_scores_do_not_depend_on_batching_or_sharing(lm, requests):
    model, tok = lm
    a = Scorer(model, tok, batch_size=1).loglikelihoods(requests).loglikelihoods
    b = Scorer(model, tok, batch_size=64).loglikelihoods(requests).loglikelihoods
    c = Scorer(model, tok, batch_size=7, prefix_sharing=False).loglikelihoods(requests)
    assert c.stats["rows"] == sum(len(conts) for _, conts in requests)
    flat = lambda rows: torch.tensor([v for r in rows for v in r])  # noqa: E731
    assert torch.allclose(flat(a), flat(b), atol=1e-5) and torch.allclose(flat(a), flat(c.loglikelihoods), atol=1e-5)


def test_left_truncation_as_lm_eval_and_counted(lm, requests):
    model, tok = lm
    scorer = Scorer(model, tok, max_length=20)
    scored = scorer.loglikelihoods(requests[:6])
    assert all(scored.truncated)  # every demo question is longer than 20 tokens
    for (ctx, conts), lls in zip(requests[:6], scored.loglikelihoods, strict=True):
        assert lls == pytest.approx([direct(model, tok, ctx, c, 20) for c in conts], abs=1e-4)


def test_trailing_context_space_moves_to_the_continuation(lm):
    model, tok = lm
    scorer = Scorer(model, tok)
    a = scorer.loglikelihoods([("Question: Which planet is red?\nAnswer: ", ["Mars", "Venus"])]).loglikelihoods
    b = scorer.loglikelihoods([("Question: Which planet is red?\nAnswer:", [" Mars", " Venus"])]).loglikelihoods
    assert a[0] == pytest.approx(b[0], abs=1e-6)


def test_eager_attention_takes_the_additive_mask(tiny_model, requests, lm):
    eager = LlamaForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="eager").eval()
    tok = lm[1]
    scorer = Scorer(eager, tok)
    got = scorer.loglikelihoods(requests).loglikelihoods
    want = Scorer(*lm).loglikelihoods(requests).loglikelihoods
    assert scorer.share
    assert [v for r in got for v in r] == pytest.approx([v for r in want for v in r], abs=1e-4)


class NoPositions(LlamaForCausalLM):
    """A model whose attention ignores the position ids it is given (as ALiBi models do)."""

    def forward(self, *args, position_ids=None, **kwargs):  # noqa: ANN001, ANN002, ANN003
        return super().forward(*args, **kwargs)


def test_falls_back_to_plain_rows_when_sharing_would_be_wrong(tiny_model, lm, requests):
    model = NoPositions.from_pretrained(tiny_model, dtype=torch.float32).eval()
    scorer = Scorer(model, lm[1])
    got = scorer.loglikelihoods(requests[:4]).loglikelihoods
    assert not scorer.share  # the first-batch check caught it
    want = Scorer(*lm, prefix_sharing=False).loglikelihoods(requests[:4]).loglikelihoods
    assert [v for r in got for v in r] == pytest.approx([v for r in want for v in r], abs=1e-4)


def test_max_length_resolves_like_lm_eval(lm):
    model, tok = lm
    assert resolve_max_length(model.config, tok) == model.config.max_position_embeddings
    assert resolve_max_length(object(), tok) == 2048  # neither config nor tokenizer says


def test_metrics_normalise_by_characters_and_break_ties_first():
    lls = [-4.0, -6.0, -4.0]
    m = item_metrics(lls, ["ab", "abcdef", "xy"], answer=1)
    assert m["acc"] == 0.0 and m["acc_norm"] == 1.0  # -6/6 beats -4/2
    assert item_metrics(lls, ["a", "b", "c"], answer=0)["acc"] == 1.0  # tie: the first wins
    mc2 = item_metrics([0.0, 0.0, -1e9], ["a", "b", "c"], 0, labels=[1, 0, 0])["mc2"]
    assert mc2 == pytest.approx(0.5)
    assert aggregate([{"acc": 1.0}, {"acc": 0.0}, {"acc": 1.0}])["acc"] == pytest.approx(2 / 3)


def test_stderr_is_lm_evals_sample_stderr_of_the_mean():
    agg = aggregate([{"acc": 1.0, "chance": 0.25}, {"acc": 0.0, "chance": 0.25}, {"acc": 1.0, "chance": 0.5}])
    # sample variance (n - 1) of [1, 0, 1] is 1/3; over sqrt(3): 1/3
    assert agg == {"acc": pytest.approx(2 / 3), "acc_stderr": pytest.approx(1 / 3), "chance": pytest.approx(1 / 3), "n": 3}
    assert aggregate([{"acc": 1.0}])["acc_stderr"] is None  # lm-eval's "N/A" for one item
    assert item_metrics([-1.0, -2.0, -3.0, -4.0], list("abcd"), 0)["chance"] == 0.25


def test_identical_choices_are_scored_once_and_tie_exactly(lm):
    """lm-eval scores each choice alone, so identical choices tie and argmax takes the first; scored
    at two offsets of one shared row they could differ by ~1e-5 and flip acc_norm."""
    model, tok = lm
    ctx = "Question: Which planet is red?\nAnswer:"
    dup, uniq = [" Mars", " Venus", " Mars", " Jupiter"], [" Mars", " Venus", " Jupiter"]
    for sharing in (True, False):
        scorer = Scorer(model, tok, prefix_sharing=sharing)
        got = scorer.loglikelihoods([(ctx, dup), (ctx, uniq)])
        a, v, j = got.loglikelihoods[1]
        assert got.loglikelihoods[0] == [a, v, a, j]  # exactly, not approximately
        assert got.stats["continuations"] == 6  # the second " Mars" was not scored again
    best = max(range(4), key=lambda k: ([a, v, a, j][k], -k))
    assert item_metrics([a, v, a, j], ["Mars", "Venus", "Mars", "Jupiter"], answer=best)["acc"] == 1.0
    assert item_metrics([a, a], ["Mars", "Mars"], answer=1) == {"acc": 0.0, "acc_norm": 0.0, "chance": 0.5}


class Transformers517(LlamaForCausalLM):
    """transformers 5.17 indexes hidden states with logits_to_keep as given: a 2D mask fails there."""

    def forward(self, *args, logits_to_keep=0, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if isinstance(logits_to_keep, torch.Tensor) and logits_to_keep.ndim == 2:
            raise IndexError("too many indices for tensor of dimension 3")
        return super().forward(*args, logits_to_keep=logits_to_keep, **kwargs)


def test_every_way_of_selecting_logits_gives_the_same_scores(tiny_model, lm, requests):
    want = [v for r in Scorer(*lm).loglikelihoods(requests).loglikelihoods for v in r]
    old = Scorer(Transformers517.from_pretrained(tiny_model, dtype=torch.float32).eval(), lm[1])
    got = [v for r in old.loglikelihoods(requests).loglikelihoods for v in r]
    assert old._keep_mode == "index" and got == pytest.approx(want, abs=1e-5)
    plain = Scorer(*lm)
    plain._keep_mode = None  # a model without logits_to_keep: every position's logits
    assert [v for r in plain.loglikelihoods(requests).loglikelihoods for v in r] == pytest.approx(want, abs=1e-5)


def test_progress_reports_every_batch_up_to_the_total(lm, requests):
    scorer = Scorer(*lm, batch_size=4)
    seen: list[tuple[int, int]] = []
    scorer.progress = lambda done, total: seen.append((done, total))
    rows = scorer.loglikelihoods(requests).stats["rows"]
    assert seen[-1] == (rows, rows) and len(seen) == -(-rows // 4)  # one call per batch, ending at the total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
