"""One exception type for every problem a user can fix; the CLI prints it without a traceback."""

from __future__ import annotations

from pathlib import Path


class CxrsegError(Exception):
    """A problem with the user's input (file, folder, checkpoint, option), stated in one line."""


class InputFileError(CxrsegError):
    """A file that cannot be used, with its path in the message.

    ``kind`` says what sort of problem it is, for callers that answer differently (the web service's status
    codes): 'empty', 'too_large' (too many pixels), 'not_image' (not a format we read), 'missing', or
    'invalid' (corrupt, truncated, too small, unusable content).
    """

    KINDS = ("empty", "too_large", "not_image", "missing", "invalid")

    def __init__(self, path: str | Path, problem: str, kind: str = "invalid") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown InputFileError kind {kind!r}")
        self.path = Path(path)
        self.problem = problem
        self.kind = kind
        super().__init__(f"{path}: {problem}")
