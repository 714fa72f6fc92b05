"""Upload an export folder to the Hugging Face Hub."""

from __future__ import annotations

import os
from pathlib import Path

from medtune.export import ExportError


def push(folder: Path, repo_id: str, token: str | None = None, endpoint: str | None = None) -> str:
    """Upload the export to the Hugging Face Hub (model repo); a clear, fast error offline."""
    from huggingface_hub import HfApi

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        raise ExportError(f"cannot push to the Hugging Face Hub ({repo_id}): HF_HUB_OFFLINE is set; the export is in {folder}")
    api = HfApi(token=token, endpoint=endpoint)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="medtune export")
    except Exception as e:  # network, auth and hub errors all end the same way for the user
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(
            f"cannot push to the Hugging Face Hub ({repo_id}): {type(e).__name__}: {msg} "
            f"(offline or not logged in? the export is in {folder})"
        ) from None
    return str(getattr(info, "commit_url", info))
