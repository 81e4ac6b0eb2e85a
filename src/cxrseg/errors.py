"""One exception type for every problem a user can fix; the CLI prints it without a traceback."""

from __future__ import annotations

from pathlib import Path


class CxrsegError(Exception):
    """A problem with the user's input (file, folder, checkpoint, option), stated in one line."""


class InputFileError(CxrsegError):
    """A file that cannot be used, with its path in the message."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
