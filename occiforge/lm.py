"""Language models and tokenizers as every stage loads and scores them: the one safe loader.

Every `from_pretrained` in occiforge goes through `load_tokenizer` / `load_causal_lm`, which
never run a model's own code (`trust_remote_code=False` unless the caller names the model as
trusted), load weights from safetensors only (no pickle), and turn any loader failure into a
one-line `UserError`. transformers and torch are imported inside the functions, so importing
this module costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from occiforge.errors import UserError

_TRUSTED: set[str] = set()  # specs whose own code may run: the recipe's `trust_remote_code`, nothing else
PAD, BOS, EOS = "<pad>", "<s>", "</s>"  # the special tokens of tokenizers occiforge trains
EXTENSION_FILE = "extension.json"  # the record the tokenizer stage writes next to an extended tokenizer


def trust(specs: list[str]) -> None:
    """Allow these models/tokenizers (paths or hub ids, as the recipe names them) to run their own code."""
    _TRUSTED.clear()
    _TRUSTED.update(str(s) for s in specs)


def _trusted(spec: str | Path, asked: bool) -> bool:
    return asked or str(spec) in _TRUSTED


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def load_tokenizer(spec: str | Path, trust_remote_code: bool = False) -> Any:
    """A tokenizer.json file, a HF folder or a hub id, as a fast HF tokenizer with EOS and PAD.

    A BOS is optional (Qwen's tokenizers have none): documents then start without one, and scoring
    conditions on EOS instead (`prefix_token_id`, as lm-eval does)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    spec = str(spec)
    try:
        if spec.endswith(".json") and Path(spec).is_file():
            tok = PreTrainedTokenizerFast(tokenizer_file=spec)
        else:
            tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=_trusted(spec, trust_remote_code))
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing "cannot load"
        raise UserError(f"cannot load tokenizer {spec!r}: {_first_line(e)}") from None
    if not tok.is_fast:
        raise UserError(f"tokenizer {spec!r} has no fast (tokenizers) implementation")
    if tok.eos_token is None:  # it ends every document and every answer
        raise UserError(f"tokenizer {spec!r} has no eos_token (expected e.g. {EOS!r})")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if PAD not in tok.get_vocab() else PAD
    return tok


def load_causal_lm(path: str | Path, dtype: Any = None, trust_remote_code: bool = False) -> Any:
    """A HF folder or hub id as a causal LM (fp32 unless `dtype`); a one-line UserError if it is not one."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32, use_safetensors=True,
                                                    trust_remote_code=_trusted(path, trust_remote_code))
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing "cannot load"
        raise UserError(f"cannot load a causal LM from {str(path)!r}: {_first_line(e)}") from None


def check_vocab(model: Any, tok: Any, where: str) -> None:
    """A one-line error where the tokenizer has ids the model has no embedding row for."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tok) > rows:
        raise UserError(f"{where}: tokenizer has {len(tok)} tokens but the model's embedding has {rows} rows; extend the model or use its tokenizer")


def runs_own_code(model: Any) -> bool:
    """Whether the model's class came from its own code (`trust_remote_code`), not from transformers: another
    process cannot rebuild it from its config alone."""
    return any(c.__module__.startswith("transformers_modules") for c in type(model).__mro__)


def load_config(path: str | Path, trust_remote_code: bool = False) -> Any:
    """A model's config only (no weights): for checks that must run before any work."""
    from transformers import AutoConfig

    if Path(path).expanduser().is_dir() and not (Path(path).expanduser() / "config.json").is_file():
        raise UserError(f"init {str(path)!r}: no config.json in it (not a Hugging Face model folder)")
    try:
        return AutoConfig.from_pretrained(str(path), trust_remote_code=_trusted(path, trust_remote_code))
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing "cannot load"
        raise UserError(f"init {str(path)!r}: cannot read the model config: {_first_line(e)}") from None


def read_extension(folder: str | Path) -> dict[str, Any] | None:
    """The extension record a tokenizer stage wrote next to its tokenizer, if any."""
    path = Path(folder) / EXTENSION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def prefix_token_id(tok: Any) -> int:
    """The token every sequence is scored after: BOS, or EOS for tokenizers without one (as lm-eval)."""
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def nll_sum(model: Any, windows: Sequence[list[int]], batch_size: int, pad: int) -> float:
    """Sum of next-token NLL (nats) over all windows, batched by length."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = [windows[i] for i in order[start : start + batch_size]]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, w in enumerate(chunk):
                ids[row, : len(w)] = torch.tensor(w)
                mask[row, : len(w)] = 1
            ids, mask = ids.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
            nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            total += float((nll * mask[:, 1:]).sum())
    return total


def is_local_spec(spec: str) -> bool:
    """Whether a model or tokenizer spec names something on disk rather than a hub id."""
    return Path(spec).expanduser().exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.endswith(".json")


def check_hub_dataset(dataset: str, where: str) -> None:
    """Before any stage runs: an `hf:` dataset is there: a local copy (a folder or file), or a hub id
    confirmed by one quick request (a dead network otherwise gives a minute of retries and a traceback
    mid-run). Offline mode reads the local cache: the reader says it then if the dataset is not there."""
    import os

    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    if Path(dataset).expanduser().exists():
        return
    if is_local_spec(dataset):  # `hf:./chats`, `hf:/data/x`: a local dataset folder, which is not there
        raise UserError(f"{where}: hf:{dataset}: not found")
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_DATASETS_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return
    try:
        HfApi().dataset_info(dataset, timeout=10)
    except HFValidationError as e:
        raise UserError(f"{where}: hf:{dataset} is not a dataset id ({_first_line(e)})") from None
    except RepositoryNotFoundError:
        raise UserError(f"{where}: dataset {dataset!r} not found on the Hugging Face Hub") from None
    except (OfflineModeIsEnabled, OSError) as e:  # requests/httpx connection errors are OSErrors
        raise UserError(f"{where}: hf:{dataset} needs the network, which is not reachable "
                        f"({type(e).__name__}); use a local copy") from None
    except Exception as e:  # any other transport failure means the same for the user
        if "connect" in type(e).__name__.lower() or "timeout" in type(e).__name__.lower():
            raise UserError(f"{where}: hf:{dataset} needs the network, which is not reachable") from None
        raise


def check_available(spec: str, where: str) -> None:
    """Before any stage runs: a local path exists, or a hub id is in the local cache or confirmed
    by one quick Hub call (no retries). Offline (`HF_HUB_OFFLINE=1`) or unknown: one line at once,
    instead of a retry storm after hours of earlier stages."""
    if Path(spec).expanduser().exists():
        return
    if is_local_spec(spec):
        raise UserError(f"{where}: not found: {spec}")
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(spec, f), str) for f in ("config.json", "tokenizer_config.json")):
        return
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"{where}: {spec!r} is not a local path and not in the Hugging Face cache (HF_HUB_OFFLINE is set)")
    try:
        HfApi().model_info(spec, timeout=10)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, gated: all one line for the user
        raise UserError(f"{where}: {spec!r} is not a local path and the Hugging Face Hub did not confirm it: {_first_line(e)}") from None
