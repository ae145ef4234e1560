"""Resumable checkpoints: model and optimizer state as safetensors, never pickle.

torch.distributed.checkpoint (DCP) writes through its Hugging Face storage layer, so every
rank saves its own shards (FSDP2 DTensors) as `.safetensors` files with a JSON index. The tensors
would load on any number of ranks, but the training loop refuses to resume on another number than
the one that wrote the checkpoint (`world_size` in trainer_state.json): which rows a step reads
depends on it, so a resharded resume would re-read or skip data. Optimizer state is flattened into the same
tensor map (`optim.<param fqn>.<name>`), its param groups go to JSON. A checkpoint folder is
written under a temporary name and renamed by rank 0, so `latest/` is always complete.

A checkpoint also holds what rebuilds its model empty: the buffers outside the state dict (rotary
`inv_freq`, as `buffer.<name>`) and, for a model transformers implements, its config (with the
weights' dtype) and generation config. A resumed run builds the model from these on the meta device
and fills it from the checkpoint: no rank loads the model it started from again (27 GiB read and
broadcast by rank 0 for a 7B, only for the checkpoint to replace it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import (
    HuggingFaceStorageReader,
    HuggingFaceStorageWriter,
)
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from occiforge import artifacts
from occiforge.dist import barrier, is_initialized
from occiforge.errors import UserError
from occiforge.lm import runs_own_code

LATEST, PREVIOUS = "latest", "previous"
CONFIG, GENERATION = "config.json", "generation_config.json"  # the model's structure (see `structure`)
STATE = "trainer_state.json"  # written last: a checkpoint folder holding it is complete


def _shared(names: list[str], look: Callable[[str], Any]) -> dict[str, Any]:
    """`look(name)` for every file name, each rank reading its share (`names[rank::world]`); every rank gets all
    the answers. A checkpoint holds every rank's shards and optimizer state (87 GB for the 7B recipe on 64
    GPUs): rank 0 alone hashing them kept the others waiting 1.5-3 minutes a save, and on a resume every
    rank read all of them from the shared file system."""
    if not is_initialized():
        return {name: look(name) for name in names}
    import torch.distributed as tdist

    rank, world = tdist.get_rank(), tdist.get_world_size()
    parts: list[Any] = [None] * world
    tdist.all_gather_object(parts, {name: look(name) for name in names[rank::world]})
    return {k: v for part in parts for k, v in part.items()}


def _listing(folder: Path) -> list[str]:
    """The files of a folder as rank 0 sees them (a shared file system may show another node's files late)."""
    names = [sorted(p.name for p in folder.iterdir() if p.is_file())]
    if is_initialized():
        import torch.distributed as tdist

        tdist.broadcast_object_list(names, src=0)
    return names[0]


@contextmanager
def _single_process_ok() -> Iterator[None]:
    """DCP warns when no process group exists; a single process is a supported case here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _flat(model: torch.nn.Module, opt: torch.optim.Optimizer,
          buffers: bool = True) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Model and optimizer state as one flat name -> tensor map (tied weights stored once); with `buffers`,
    the buffers the state dict leaves out too."""
    flat: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    model_sd = get_model_state_dict(model)
    if buffers:
        flat.update({f"buffer.{name}": buf for name, buf in model.named_buffers() if name not in model_sd})
    for key, value in model_sd.items():
        local = value.to_local() if hasattr(value, "to_local") else value
        if local.untyped_storage().data_ptr() in seen and local.numel():
            continue  # a tied weight (lm_head = embed_tokens)
        seen.add(local.untyped_storage().data_ptr())
        flat[f"model.{key}"] = value
    osd = get_optimizer_state_dict(model, opt)  # also creates empty state on a fresh optimizer
    for fqn, pstate in osd["state"].items():
        for name, value in pstate.items():
            flat[f"optim.{fqn}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return flat, osd["param_groups"]


def save(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], rank: int = 0) -> None:
    tmp = folder / f".{LATEST}.partial"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    flat, groups = _flat(model, optimizer)
    final = folder / LATEST
    try:
        with _single_process_ok():
            # save_distributed: one file per rank (without it every rank writes the same file name)
            dcp.save(flat, storage_writer=HuggingFaceStorageWriter(str(tmp), save_distributed=True), no_dist=not is_initialized())
        if rank == 0:
            _write_structure(tmp, model)
            (tmp / "optimizer_groups.json").write_text(json.dumps(groups))
        barrier()
        names = _listing(tmp)
        files = _shared(names, lambda name: [(tmp / name).stat().st_size, artifacts.file_digest(tmp / name)])
        if rank == 0:
            (tmp / STATE).write_text(json.dumps({**state, "files": {n: files[n] for n in names}}))  # last: marks it complete
    except OSError as e:  # a full disk, a quota: the checkpoint before this one is still whole
        raise UserError(f"checkpoint: cannot write {tmp} ({e.strerror or e}); {final} is intact; "
                        "free some space and run the same command again to resume") from None
    if rank == 0:
        previous = folder / PREVIOUS
        shutil.rmtree(previous, ignore_errors=True)
        if final.exists():
            os.replace(final, previous)  # kept until the next save: the fallback if `latest` is damaged
        os.replace(tmp, final)
    barrier()


def _write_structure(folder: Path, model: torch.nn.Module) -> None:
    """The config (with the weights' dtype) and generation config of a model transformers implements."""
    config = getattr(model, "config", None)
    if config is None or runs_own_code(model):
        return  # not a HF model, or one with its own code: a resume builds it as it was built first
    fields = json.loads(config.to_json_string(use_diff=False))
    fields["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    if hasattr(model, "get_output_embeddings") and (out := model.get_output_embeddings()) is not None:
        # as the weights are, not as the config says: transformers unties a head saved apart from its embedding
        fields["tie_word_embeddings"] = out.weight is model.get_input_embeddings().weight
    (folder / CONFIG).write_text(json.dumps(fields, indent=2))
    if (generation := getattr(model, "generation_config", None)) is not None:
        generation.to_json_file(folder / GENERATION)


def structure(folder: Path) -> Path | None:
    """The folder holding the latest checkpoint's model config, for a resume to build the model from; None
    where the checkpoint has none (not a transformers model, or written before checkpoints kept it)."""
    return folder / LATEST if (folder / LATEST / CONFIG).is_file() else None


def damage(ckpt: Path) -> str | None:
    """What is wrong with a checkpoint folder (a file missing, cut short or changed), or None."""
    try:
        state = json.loads((ckpt / STATE).read_text())
    except (OSError, ValueError) as e:
        return f"{STATE} unreadable ({e.__class__.__name__})"
    files = state.get("files", {})

    def whole(name: str) -> bool:
        path, (size, digest) = ckpt / name, files[name]
        return path.is_file() and path.stat().st_size == size and artifacts.file_digest(path) == digest

    found = _shared(sorted(files), whole)  # under torchrun a collective: every rank calls it
    return next((f"{name} is missing or changed" for name in sorted(files) if not found[name]), None)


def fingerprints(folder: Path) -> set[str]:
    """The run fingerprints of the checkpoints in `folder` that still say theirs (none of a damaged one)."""
    out = set()
    for name in (LATEST, PREVIOUS):
        try:
            out.add(json.loads((folder / name / STATE).read_text())["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return out


def usable(folder: Path, log: Callable[[str], None], rank: int = 0) -> dict[str, Any] | None:
    """The trainer state of the newest whole checkpoint in `folder`; a damaged one is set aside
    (renamed, never deleted) and the previous one is tried, saying so."""
    for name in (LATEST, PREVIOUS):
        ckpt = folder / name
        if not ckpt.is_dir():
            continue
        if (problem := damage(ckpt)) is None:
            barrier()  # every rank has read it before rank 0 renames it (a rank still hashing would find files gone)
            if name == PREVIOUS and rank == 0:
                os.replace(ckpt, folder / LATEST)
            barrier()
            return json.loads((folder / LATEST / STATE).read_text())
        barrier()  # every rank has looked before rank 0 renames
        if rank == 0:
            # beside the checkpoint folder, which a fresh start removes: a damaged one is kept for a look
            stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
            while (aside := folder.parent / f"{folder.name}.{name}.damaged-{stamp}{f'-{n}' if n else ''}").exists():
                n += 1
            os.replace(ckpt, aside)
            log(f"checkpoint {ckpt} is damaged ({problem}); set aside as {aside.name}")
    return None


def restore(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load the latest checkpoint into `model` (buffers too, where the checkpoint has them) and `optimizer`."""
    ckpt = folder / LATEST
    reader = HuggingFaceStorageReader(str(ckpt))
    with _single_process_ok():
        saved = reader.read_metadata().state_dict_metadata
        flat, _ = _flat(model, optimizer, buffers=any(k.startswith("buffer.") for k in saved))
        if unused := sorted(k for k in saved if k.startswith("model.") and k not in flat):  # DCP would skip them silently
            raise UserError(f"checkpoint {ckpt} holds weights this model has no place for ({', '.join(unused[:3])}); "
                            f"delete {folder} to start over")
        dcp.load(flat, storage_reader=reader, no_dist=not is_initialized())
    model_sd = {k.removeprefix("model."): v for k, v in flat.items() if k.startswith("model.")}
    set_model_state_dict(model, model_sd, options=StateDictOptions(strict=False))
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if key.startswith("optim."):
            fqn, name = key.removeprefix("optim.").rsplit(".", 1)
            state.setdefault(fqn, {})[name] = value
    groups = json.loads((ckpt / "optimizer_groups.json").read_text())
    set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups})
    return json.loads((ckpt / STATE).read_text())


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded model on CPU (a collective under FSDP2: every rank must call it)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
