"""The project's own error types. The CLI prints these as one line and exits 2; anything else keeps its traceback."""

from __future__ import annotations


class HfGPT2Error(Exception):
    """Base class of every user-facing error: the message names the bad value and the fix."""


class RecipeError(HfGPT2Error):
    """A recipe or override is invalid (unknown key, wrong type, impossible value)."""


class DataError(HfGPT2Error):
    """A data source is missing, empty or malformed."""


class CheckpointError(HfGPT2Error):
    """A checkpoint or model folder is missing, corrupt or incompatible."""


class ConversionError(HfGPT2Error):
    """Weights cannot be converted between stock GPT-2 and hf_gpt2 (missing tensor, shape mismatch)."""


class RunFolderError(HfGPT2Error):
    """A run folder would be overwritten, or cannot be resumed."""


class HubError(HfGPT2Error):
    """Talking to the Hugging Face Hub failed: it cannot be reached, no token, no permission, a missing repo, or a
    failed upload."""


class StorageError(HfGPT2Error):
    """A file or folder cannot be written or read: a full or read-only disk, no permission, a file in the way.

    ``path`` is the file or folder named in the message and ``errno`` the operating system's error number.
    """

    def __init__(self, message: str, *, path: str, errno: int) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno
