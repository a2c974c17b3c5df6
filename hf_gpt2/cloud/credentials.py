"""Local checks before paying for GPUs: the cloud's API key and the Hugging Face token."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import get_token

from hf_gpt2.cloud.errors import CloudError

LAMBDA_KEYS = Path(".lambda_cloud") / "lambda_keys"


def check_lambda_credentials(home: Path | None = None) -> Path:
    """Return the Lambda Cloud key file (``~/.lambda_cloud/lambda_keys``) or raise CloudError saying how to make it."""
    path = (home or Path.home()) / LAMBDA_KEYS
    text = path.read_text(errors="replace") if path.is_file() else ""
    has_key = any(
        line.split("=", 1)[0].strip() == "api_key" and line.split("=", 1)[1].strip()
        for line in text.splitlines()
        if "=" in line
    )
    if not has_key:
        problem = "has no `api_key = ...` line" if path.is_file() else "is missing"
        raise CloudError(
            f"Lambda Cloud credentials: {path} {problem}; create an API key at https://cloud.lambda.ai/api-keys, "
            f"then `mkdir -p ~/.lambda_cloud && echo 'api_key = <KEY>' > ~/.lambda_cloud/lambda_keys && "
            f"chmod 600 ~/.lambda_cloud/lambda_keys` and check with `sky check lambda`"
        )
    return path


def hf_token() -> str | None:
    """The local Hugging Face token: ``$HF_TOKEN``, else the one `hf auth login` stored; None when there is none."""
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    return get_token()


def require_hf_token(repo_id: str) -> str:
    """Return the token for a run that pushes to ``repo_id``, or raise CloudError saying how to provide one."""
    token = hf_token()
    if not token:
        raise CloudError(
            f"the recipe pushes checkpoints to the Hub (hub.repo_id={repo_id}) but no Hugging Face token was found: "
            "`export HF_TOKEN=hf_...` (a write token from https://huggingface.co/settings/tokens) or `hf auth login`"
        )
    return token
