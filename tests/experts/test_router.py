"""Language routing: centroid rows, routing shares, the batches and objective of the brief training
(run through the one training loop), on a tiny mixture of two experts and two synthetic languages
with disjoint vocabularies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from occiforge.experts import router
from occiforge.experts.moe import assemble
from occiforge.experts.objective import MixtureObjective
from occiforge.loop import LoopSpec, train
from occiforge.recipe import OptimConfig

SEQ = 16


def _streams() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(4, 34, 4000), rng.integers(34, 64, 4000)]  # language A: w0..w29, B: w30..w59


@pytest.fixture
def mixture(family, tmp_path):
    assemble([family["e1"], family["e2"]], tmp_path / "moe", top_k=1)
    return AutoModelForCausalLM.from_pretrained(tmp_path / "moe")


def _own_share(model, streams) -> list[float]:
    shares = router.routing_shares(model, {str(i): router.windows(s[-800:], SEQ) for i, s in enumerate(streams)})
    return [shares[str(i)]["mean"][i] for i in range(len(streams))]


def test_centroid_rows_separate_languages():
    torch.manual_seed(0)
    common = torch.randn(32) * 5  # every language's states share a large offset: centring removes it
    feats = [common + torch.randn(32) + 0.5 * torch.randn(500, 32) for _ in range(3)]
    rows = router.centroid_rows(feats, scale=2.0)
    assert torch.allclose(rows.norm(dim=-1), torch.full((3,), 2.0))
    for i, f in enumerate(feats):
        assert ((f @ rows.T).argmax(-1) == i).float().mean() > 0.95


@pytest.mark.slow
def test_language_init_routes_each_language_to_its_expert(mixture):
    streams = _streams()
    assert min(_own_share(mixture, streams)) < 0.01  # zero routers: everything goes to expert 0
    router.init_language_routers(mixture, [router.windows(s[:2000], SEQ) for s in streams], scale=4.0)
    # a random tiny model's states are far from linearly separable: centroids route most tokens right,
    # the brief training (below) the rest
    assert min(_own_share(mixture, streams)) > 0.75


def test_mixed_batches_cycle_through_experts_and_are_reproducible():
    get = router.mixed_batches(_streams(), batch_size=3, seq_len=SEQ, seed=5)
    a, b = get(2, 0), get(2, 0)
    assert torch.equal(a["input_ids"], b["input_ids"]) and a["input_ids"].shape == (3, SEQ + 1)
    assert a["expert"].tolist() == [0, 1, 0] and get(3, 0)["expert"].tolist() == [1, 0, 1]
    for row, e in zip(a["input_ids"], a["expert"]):
        assert ((row >= 34) == bool(e)).all()  # each row is its expert's language


def _spec(steps: int, lr: float) -> LoopSpec:
    return LoopSpec(steps=steps, lr=lr, optim=OptimConfig(warmup_steps=2), grad_accum=1, precision="fp32",
                    save_every=1000, log_every=5, fingerprint="t")


def test_distilling_from_the_expert_itself_costs_nothing(family, tmp_path):
    assemble([family["e1"], family["e1"]], tmp_path / "same", top_k=1)
    moe = AutoModelForCausalLM.from_pretrained(tmp_path / "same")
    teacher = AutoModelForCausalLM.from_pretrained(family["e1"])
    batch = router.mixed_batches(_streams(), 4, SEQ, 0)(0, 0)
    with torch.no_grad():
        zero = MixtureObjective(moe, [teacher, teacher], language_loss=0.0)(**batch).loss
        routed = MixtureObjective(moe, [teacher, teacher], language_loss=1.0)(**batch).loss
        lm = MixtureObjective(moe, None, language_loss=0.0)(**batch).loss
    assert abs(float(zero)) < 1e-5 and float(routed) > 0.1 and float(lm) > 1.0


@pytest.mark.slow
def test_training_in_the_loop_teaches_routing_router_only_then_all(family, mixture, tmp_path):
    streams = _streams()
    router.init_language_routers(mixture, [router.windows(s[:2000], SEQ) for s in streams], scale=4.0)
    before = {n: p.detach().clone() for n, p in mixture.named_parameters()}
    teachers = [AutoModelForCausalLM.from_pretrained(family[e]) for e in ("e1", "e2")]
    objective = MixtureObjective(mixture, teachers, language_loss=1.0)
    objective.to_teachers("cpu")
    assert router.freeze_for(mixture, "router") == 2 * 2 * 32  # two layers of 2 x 32 router weights
    history = train(objective, router.mixed_batches(streams, 4, SEQ, 0), _spec(20, 0.05), tmp_path / "a")
    assert history[-1]["loss"] < history[0]["loss"]
    for name, p in mixture.named_parameters():
        assert torch.equal(p, before[name]) != name.endswith("mlp.gate.weight"), name
    # a random tiny model's states are not linearly separable enough for routers alone to pass 0.9
    # (about 0.8 either way): training the whole mixture makes them so
    router.freeze_for(mixture, "all")
    train(objective, router.mixed_batches(streams, 4, SEQ, 1), _spec(30, 0.01), tmp_path / "b")
    assert min(_own_share(mixture, streams)) > 0.9
