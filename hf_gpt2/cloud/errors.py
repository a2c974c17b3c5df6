"""The error type of remote runs: one line that names the problem and the command that fixes it."""

from __future__ import annotations

from hf_gpt2.errors import HfGPT2Error


class CloudError(HfGPT2Error):
    """A remote run cannot start or be reached (no SkyPilot, no credentials, no capacity, unknown GPU, ...)."""
