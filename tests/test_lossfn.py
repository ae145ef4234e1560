"""The chunked causal-LM loss (occiforge.lossfn) against each family's own loss, and in the loop."""

from pathlib import Path

import pytest
import torch
import transformers

from occiforge import lossfn
from occiforge.loop import LoopSpec, train
from occiforge.recipe import OptimConfig

VOCAB = 97
WIDTH = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
         "intermediate_size": 64, "head_dim": 16, "max_position_embeddings": 64}
FAMILIES = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {}),
    "gemma": ("GemmaConfig", {}),
    "gemma2 (soft-capped logits)": ("Gemma2Config", {"final_logit_softcapping": 2.0, "query_pre_attn_scalar": 16}),
    "gemma3": ("Gemma3TextConfig", {"final_logit_softcapping": 5.0, "query_pre_attn_scalar": 16, "sliding_window": 8}),
}


def _model(family: str, tied: bool = True) -> torch.nn.Module:
    config_cls, extra = FAMILIES[family]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**WIDTH, **extra, tie_word_embeddings=tied)
    model = transformers.AutoModelForCausalLM.from_config(config).float()
    with torch.no_grad():  # Gemma initialises its norms so that logits are tiny: make the loss's gradient visible
        model.get_output_embeddings().weight.normal_(0, 1.0)
    return model


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """3 rows of 40: a masked prompt, a gap, a row with no target at all (117 target positions, 2 chunks of 64)."""
    ids = torch.randint(0, VOCAB, (3, 40), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :11] = -100
    labels[1, 20:25] = -100
    labels[2] = -100
    return ids, labels


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_loss_and_gradients_equal_the_models_own(family: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(lossfn._CHUNK_BYTES, "cpu", 4 * VOCAB)  # the floor, 64 positions a chunk: two chunks here
    model, (ids, labels) = _model(family, tied=family != "qwen3"), _batch()
    count = torch.tensor(int((labels[:, 1:] != -100).sum()))
    own = model(input_ids=ids, labels=labels, num_items_in_batch=count)
    want = _grads(model, own.loss)
    with lossfn.chunked(model) as on:
        out = model(input_ids=ids, labels=labels, num_items_in_batch=count)
        got = _grads(model, out.loss)
    assert on and out.logits is None and "forward" not in model.__dict__
    assert out.loss.item() == pytest.approx(own.loss.item(), rel=1e-6)
    assert got.keys() == want.keys()
    for name, g in want.items():
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-6), f"{name}: {(got[name] - g).abs().max()}"
    with torch.no_grad():  # the NLL of each target position; 0 where masked
        ref = torch.nn.functional.cross_entropy(own.logits[:, :-1].transpose(1, 2), labels[:, 1:].clamp_min(0), reduction="none")
    assert torch.allclose(out.token_nll, ref * (labels[:, 1:] != -100), atol=1e-5)


def test_masked_positions_never_reach_the_head(monkeypatch: pytest.MonkeyPatch):
    """An SFT batch masks its prompts: only target positions are projected (their logits would be wasted)."""
    seen: list[int] = []
    apply = lossfn._LinearCrossEntropy.apply
    monkeypatch.setattr(lossfn._LinearCrossEntropy, "apply", lambda hidden, *rest: seen.append(hidden.shape[0]) or apply(hidden, *rest))
    hidden, weight = torch.randn(2, 9, 4), torch.randn(10, 4)
    labels = torch.randint(0, 10, (2, 9))
    labels[0, 2:6] = -100
    loss, nll = lossfn.causal_lm_loss(hidden, weight, labels, count=12)
    assert seen == [12] and (nll[0, 1:5] == 0).all() and (nll[0, 5:] > 0).all()  # 2 x 8 targets, 4 masked
    logits = hidden[:, :-1] @ weight.t()
    want = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="sum") / 12
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_bf16_autocast_matches_the_models_own_loss_in_bf16():
    model, (ids, labels) = _model("llama"), _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        own = model(input_ids=ids, labels=labels)
        want = _grads(model, own.loss)
        with lossfn.chunked(model):
            got = _grads(model, model(input_ids=ids, labels=labels).loss)
    for name, g in want.items():
        assert got[name].dtype == torch.float32
        assert torch.allclose(got[name], g, rtol=0.05, atol=2e-3 * float(g.abs().max())), name


def test_without_labels_the_models_own_forward_runs_and_validation_holds_no_logits():
    model, (ids, labels) = _model("llama"), _batch()
    own, seen = model.forward, []
    model.forward = lambda **kw: seen.append(sorted(kw)) or own(**kw)  # the model's own forward, watched
    index = lossfn.target_index(labels)
    with lossfn.chunked(model):
        assert model(input_ids=ids, target_index=index).logits.shape == (3, 40, VOCAB)
        with torch.no_grad():  # the loop's validation: the loss, chunk by chunk, as HF's own gives it
            out = model(input_ids=ids, labels=labels)
    with torch.no_grad():
        want = own(input_ids=ids, labels=labels).loss
    assert out.logits is None and float(out.loss) == pytest.approx(float(want), abs=1e-5)
    asked: list[bool] = []
    apply = lossfn._LinearCrossEntropy.apply
    lossfn._LinearCrossEntropy.apply = lambda *a: asked.append(a[0].requires_grad or a[1].requires_grad) or apply(*a)
    try:
        with lossfn.chunked(model), torch.no_grad():
            model(input_ids=ids, labels=labels)
    finally:
        lossfn._LinearCrossEntropy.apply = apply
    assert asked == [False]  # the head's weight requires grad, but validation must not build its V x d gradient
    assert len(seen) == 1 and not any(lossfn.TARGET_INDEX in kw for kw in seen)  # the loop's key never reaches it


def test_positional_calls_keep_their_meaning_and_an_instance_forward_comes_back():
    model, (ids, labels) = _model("llama"), _batch()
    mask = torch.ones_like(ids)
    with lossfn.chunked(model):
        assert model(ids, mask).logits.shape == (3, 40, VOCAB)  # (input_ids, attention_mask) as HF reads them
    mine = model.forward
    model.forward = lambda *a, **k: mine(*a, **k)  # e.g. a hook library's wrapper
    wrapper = model.forward
    with lossfn.chunked(model):
        assert model(input_ids=ids, labels=labels).logits is None
    assert model.forward is wrapper


def test_a_model_it_does_not_know_keeps_its_forward():
    wrapped = torch.nn.Sequential(_model("llama"))
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2))
    for model in (wrapped, gpt2):
        with lossfn.chunked(model) as on:
            assert not on and "forward" not in model.__dict__
    with lossfn.chunked(_model("llama"), enabled=False) as on:
        assert not on


def _spec(chunked: bool) -> LoopSpec:
    return LoopSpec(steps=4, lr=1e-2, optim=OptimConfig(warmup_steps=1), grad_accum=2, precision="fp32", save_every=100,
                    log_every=1, fingerprint="fp", groups=("en", "de"), chunked_loss=chunked)


def test_the_loop_trains_the_same_with_either_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Same updates (to float rounding) and the same per-language losses, which come from the chunks' NLLs;
    the loop hands the loss the target positions it found on the CPU labels (no device sync for them)."""
    ids, labels = _batch()
    given: list[bool] = []
    loss_fn = lossfn.causal_lm_loss
    monkeypatch.setattr(lossfn, "causal_lm_loss", lambda *a, index=None, **k: given.append(index is not None) or loss_fn(*a, index=index, **k))

    def batches(step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = slice(0, 2) if micro == 0 else slice(2, 3)
        return {"input_ids": ids[rows], "labels": labels[rows].clone() if step else ids[rows], "groups": torch.tensor([0, 1][: 2 - micro])}

    own, chunked = _model("llama"), _model("llama")
    a = train(own, batches, _spec(False), tmp_path / "own")
    b = train(chunked, batches, _spec(True), tmp_path / "chunked")
    for x, y in zip(a, b):
        assert {k: x[k] for k in ("loss", "loss_en", "loss_de")} == pytest.approx({k: y[k] for k in ("loss", "loss_en", "loss_de")}, rel=1e-5)
    for (name, p), q in zip(own.named_parameters(), chunked.parameters()):
        assert torch.allclose(p, q, atol=1e-5, rtol=0), name
    assert given == [True] * 8  # 4 steps x 2 micro-batches


class _Reached(Exception):
    pass


def test_the_recipe_switch_reaches_the_loop(tiny_recipe: Path, monkeypatch: pytest.MonkeyPatch):
    """`train.chunked_loss` in the recipe is what the train stage hands the loop."""
    from occiforge.cli import main
    from occiforge.train import trainer

    seen: list[bool] = []

    def reached(model: torch.nn.Module, get_batch: object, spec: LoopSpec, *args: object, **kwargs: object) -> None:
        seen.append(spec.chunked_loss)
        raise _Reached

    monkeypatch.setattr(trainer, "train", reached)
    for flag in ("true", "false"):
        with pytest.raises(_Reached):
            main(["run", str(tiny_recipe), "--to", "train", "-q", "--set", f"train.chunked_loss={flag}"])
    assert seen == [True, False]
