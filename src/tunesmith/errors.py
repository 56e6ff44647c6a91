"""The tunesmith error family: every user-facing failure is one of these."""

from __future__ import annotations


class TunesmithError(Exception):
    """Base of every error tunesmith raises on purpose; the CLI prints it as one line."""


class ConfigError(TunesmithError, ValueError):
    """The run configuration has unknown keys or bad values."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:  # one problem reads best as one line
            super().__init__(f"{source}: {self.problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")


class DataError(TunesmithError, ValueError):
    """Input data cannot be used: unreadable file, unknown shape, or no usable row."""


class DataFileNotFound(DataError, FileNotFoundError):
    """A data file named in the config or on the command line does not exist."""


class ModelError(TunesmithError, ValueError):
    """The base model cannot be found, converted or loaded."""


class TemplateError(TunesmithError, ValueError):
    """The chat template cannot render a conversation or hides the end-of-turn token."""


class CheckpointError(TunesmithError, ValueError):
    """A checkpoint is missing, incomplete or does not match the run."""


class RunDirError(TunesmithError, OSError):
    """The run directory cannot be created or written."""


class ExportError(TunesmithError, ValueError):
    """An export could not be written or did not verify."""


class TargetMissed(TunesmithError):
    """An evaluation target declared in the objective was not met."""
