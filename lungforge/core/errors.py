"""Error kinds raised by lungforge; the CLI prints them as one red line and exits non-zero."""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


class LungforgeError(Exception):
    """Base of every error lungforge raises on purpose. The message is one line for the user."""


class InputError(LungforgeError):
    """A user-supplied file or directory is missing, unreadable or malformed."""


class ScanError(InputError):
    """One scan of a dataset cannot be used (e.g. truncated `.raw`, no seg mask)."""


class OutputError(LungforgeError):
    """An output cannot be written (read-only folder, no permission, disk full)."""


class SchemaError(LungforgeError):
    """A Zarr store does not follow the lungforge schema."""


class CheckpointError(LungforgeError):
    """A checkpoint is missing, tampered with, or does not match what was asked for."""


class RegistryError(LungforgeError):
    """A weights registry entry is unknown, or a download or verification failed."""


class GeneratorError(LungforgeError):
    """A generator made an unusable image: non-finite pixels, or pixels saturated at the range's ends."""


class LayoutError(LungforgeError):
    """A requested synthetic nodule layout cannot be placed in any label map."""


class CorruptStoreError(SchemaError):
    """A store's chunk is missing or fails its checksum (damaged on disk)."""


class ConfigError(LungforgeError, ValueError):
    """A configuration object (options dataclass) was given a value outside its field's choices or range.

    `field` names the dataclass field, so a CLI can point at its own flag for it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class LockError(LungforgeError):
    """Another process holds the lock on a store or on the weights registry."""


def torch_load_reason(exc: BaseException) -> str:
    """One line saying why `torch.load(..., weights_only=True)` refused a file.

    torch's message for a pickle of Python objects spans several lines of advice (with terminal
    escapes); its gist is the unpickler's line naming the refused global.
    """
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler error:"):
            gist = line.removeprefix("WeightsUnpickler error:").strip().split(". ")[0].rstrip(".")
            return f"it holds pickled Python objects, which lungforge never executes ({gist})"
    return lines[0] if lines else type(exc).__name__
