"""Run under torchrun (2 CPU processes, gloo) by test_distributed: rank 0 trains a tiny model alone inside
`dist.local()`, as the moe stage trains its router on rank 0 while the others wait at the runner's barrier,
with checkpoints and a resume, then every rank meets at one barrier. Rank 0 saves the weights to argv[1]; then
both ranks check that checkpoint together, before and after one file of rank 1's share is changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from occiforge import checkpoint, dist
from occiforge.loop import train

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script by torchrun
from tests.train.test_loop import _batches, _model, _spec  # noqa: E402


def steps(folder: Path) -> torch.nn.Module:
    """4 steps (a checkpoint after 3), then a run of the same fingerprint to 6 that resumes from it."""
    train(_model(), _batches, _spec(4), folder)
    model = _model()
    train(model, _batches, _spec(6), folder)
    return model


def main(out: Path) -> None:
    info = dist.init(timeout_minutes=0.5)  # a collective that only rank 0 joins fails in 30 s, not 30 min
    if info.rank == 0:
        with dist.local():
            model = steps(out.parent / "ckpt")
        save_file({k: v.clone() for k, v in model.state_dict().items()}, str(out))
    dist.barrier()
    # a checkpoint's files are checked by the ranks together, each its share: a file only rank 1 reads
    latest = out.parent / "ckpt" / checkpoint.LATEST
    whole = checkpoint.damage(latest)
    names = sorted(json.loads((latest / checkpoint.STATE).read_text())["files"])
    if info.rank == 0:
        with open(latest / names[1], "r+b") as f:  # names[1::2] are rank 1's share
            f.write(b"x")
    dist.barrier()
    Path(f"{out}.{info.rank}.json").write_text(json.dumps([whole, checkpoint.damage(latest), names[1]]))
    dist.finish()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
