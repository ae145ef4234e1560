"""The Hugging Face Hub side of a release: the token, repo names, the upload or its dry run.

The token comes from HF_TOKEN or huggingface_hub's stored login (`hf auth login`), never from a
recipe, and is passed only to `HfApi`: it is never logged, written, or put in an error message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from occiforge.errors import UserError
from occiforge.recipe import ReleaseConfig


def hub_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def repo_name(cfg: ReleaseConfig, model: str, namespace: str | None) -> str:
    """`<namespace>/<repo_prefix><model>`; without a namespace, the bare name (the token's own account)."""
    name = f"{cfg.repo_prefix}{model}"
    return f"{namespace}/{name}" if namespace else name


def _scrub(e: BaseException, token: str) -> str:
    first = (str(e).splitlines() or [type(e).__name__])[0][:200]
    return first.replace(token, "***")


def namespace(cfg: ReleaseConfig, token: str | None) -> str | None:
    """The org from the recipe, else (when pushing) the account the token belongs to."""
    if cfg.org or not (cfg.push and token):
        return cfg.org
    from huggingface_hub import HfApi

    try:
        return str(HfApi(token=token).whoami()["name"])
    except Exception as e:  # noqa: BLE001 - any Hub failure is a one-line user error
        raise UserError(f"release: cannot reach the Hub with the token: {_scrub(e, token)}") from None


def upload(folder: Path, repo_id: str, cfg: ReleaseConfig, token: str, message: str) -> dict[str, Any]:
    """Create the repo (private unless the recipe says otherwise) and upload the folder in one commit."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=cfg.private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=url.repo_id, folder_path=str(folder), repo_type="model", commit_message=message)
    except Exception as e:  # noqa: BLE001 - any Hub failure is a one-line user error
        raise UserError(f"release: upload of {folder.name} to {repo_id} failed: {_scrub(e, token)}") from None
    return {"repo_id": url.repo_id, "commit_url": str(getattr(info, "commit_url", info))}


def listing(folder: Path) -> dict[str, int]:
    """What an upload of `folder` would send: file name -> bytes."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
