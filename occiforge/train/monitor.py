"""What a training run shows while it runs: logs, validation, throughput figures, and stopping on a signal.

- `TrainLog`: every logged step as one JSON line (`train_log.jsonl`) and as TensorBoard scalars,
  both in the model's checkpoint folder while it trains and copied into the model folder at the end.
- `validation`: held-out loss per language, on fixed rows of the tokens stage's held-out split
  (`text_rows`) or, for an instruct model, of its held-out conversations (`conversation_rows`).
- `peak_flops`: the GPU's peak, which MFU divides by (the FLOPs per token: `plan.flops_per_token`).
- `GracefulStop`: SIGTERM or SIGINT ask the loop to write a checkpoint after the current step
  and stop (exit 0 for SIGTERM, as schedulers expect; 130 for Ctrl-C); a second Ctrl-C stops at once.
"""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

from occiforge.train import plan

LOG_FILE, TB_DIR = "train_log.jsonl", "tb"
EXIT_CODES = {signal.SIGTERM: 0, signal.SIGINT: 130}  # SIGTERM: schedulers expect 0; Ctrl-C: 130 as the CLI


class TrainLog:
    """Appends logged records to train_log.jsonl and TensorBoard (rank 0 only; a resumed run drops
    the records at or after its resume step, so a step is never logged twice)."""

    def __init__(self, folder: Path, start: int, tensorboard: bool, enabled: bool = True):
        self.folder, self.start, self.tensorboard, self.enabled = folder, start, tensorboard, enabled
        self.writer: Any = None
        self.opened = False

    def _open(self) -> None:
        """On the first record: the loop has resumed (or cleared a stale checkpoint folder) by then."""
        self.opened = True
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOG_FILE
        kept = [x for x in path.read_text(errors="replace").splitlines() if _step(x) < self.start] if path.is_file() else []
        path.write_text("".join(f"{line}\n" for line in kept))
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder / TB_DIR), purge_step=self.start or None)

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self.opened:
            self._open()
        with open(self.folder / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        self.writer.add_scalar(f"{key}/{sub}", v, record["step"])
                elif key != "step":
                    self.writer.add_scalar(f"train/{key}", value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


Row = tuple[np.ndarray, np.ndarray]  # (ids, labels): -100 where a position has no target


def _step(line: str) -> float:
    """A log line's step; a line a kill cut short (only the last can be) counts as past any resume step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def text_rows(heldout: dict[str, Any], window: int, tokens: int, warn: Callable[[str], None] = lambda msg: None
              ) -> dict[str, list[Row]]:
    """Per language, rows of `window` held-out tokens, every token a target: as many whole rows as hold
    `tokens` (at least one; fewer where the split is shorter). A language whose held-out split is shorter
    than one row is left out, said through `warn`."""
    out = {}
    for lang, ids in heldout.items():
        n = min(len(ids) // window, -(-max(tokens, window) // window))
        if n:
            x = np.asarray(ids[: n * window], dtype=np.int64).reshape(n, window)
            out[lang] = [(r, r) for r in x]
        else:
            warn(f"{lang} has {len(ids):,} held-out tokens, fewer than one row of {window}: no validation loss for it")
    return out


def conversation_rows(heldout: dict[str, Any], window: int, tokens: int,
                      warn: Callable[[str], None] = lambda msg: None) -> dict[str, list[Row]]:
    """Per language, its held-out conversations (`packing.Docs` with the target mask), one a row (cut to `window`
    tokens), targets on the assistant's tokens as in training, until they hold `tokens` (at least one)."""
    out = {}
    for lang, docs in heldout.items():
        rows, taken = [], 0
        for s, e in zip(docs.offsets[:-1].tolist(), docs.offsets[1:].tolist()):
            if e - s < 2:
                continue
            ids, labels = docs.piece(s, min(e - s, window))
            if (labels != -100).any():
                rows.append((ids, labels))
                taken += len(ids)
            if rows and taken >= tokens:
                break
        if rows:
            out[lang] = rows
        else:
            warn(f"{lang} has no held-out conversation with an answer within {window} tokens: no validation loss for it")
    return out


def validation(rows: dict[str, list[Row]], batch_size: int) -> Callable[[torch.nn.Module], dict[str, float]]:
    """`validate(model)` -> mean next-token loss per language over the targets of its rows (`text_rows`,
    `conversation_rows`: the same rows at every call, so the curve is comparable). Rows of unequal length
    are padded at the end and masked."""
    batches = {lang: [_padded(r[at : at + batch_size]) for at in range(0, len(r), batch_size)] for lang, r in rows.items()}
    targets = {lang: [int((b["labels"][:, 1:] != -100).sum()) for b in bs] for lang, bs in batches.items()}

    def validate(model: torch.nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        out = {}
        for lang, lang_batches in batches.items():
            total = 0.0
            for batch, n in zip(lang_batches, targets[lang]):
                if n:
                    total += float(model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False).loss) * n
            out[lang] = total / max(sum(targets[lang]), 1)
        return out

    return validate


def _padded(rows: list[Row]) -> dict[str, torch.Tensor]:
    """input_ids and labels of `rows`, padded at the end to the longest; attention_mask only where padded."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.from_numpy(x), torch.from_numpy(y), 1
    return {"input_ids": ids, "labels": labels} if bool(mask.all()) else {"input_ids": ids, "labels": labels,
                                                                          "attention_mask": mask}


def peak_flops(device: str | torch.device, precision: str) -> float | None:
    """The dense peak FLOP/s of the GPU by name for the run's precision (`plan.GPUS`, the table the
    plan's GPU hours use); None on CPU or a GPU not in the table: no MFU is shown then."""
    if torch.device(device).type != "cuda":
        return None
    gpu = plan.gpu_type_of(torch.cuda.get_device_name(torch.device(device)))
    return plan.peak_flops(gpu, precision) if gpu else None


class GracefulStop:
    """While active, SIGTERM/SIGINT set a flag the loop reads after each step (`should_stop`)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, from the last checkpoint
        self.signum = signum

    def should_stop(self) -> bool:
        return self.signum is not None

    def reason(self) -> tuple[str, int]:
        sig = signal.Signals(self.signum or signal.SIGTERM)
        return f"stopped by {sig.name}", EXIT_CODES.get(sig, 0)

    def __enter__(self) -> GracefulStop:  # noqa: PYI034
        for sig in EXIT_CODES:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay as they are
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
