"""Typed errors a user can act on.

cli.py turns any JudgeError into one line and an exit code; a Python traceback is only
shown with --debug. Messages must never contain secrets (API keys)."""

from __future__ import annotations


class JudgeError(Exception):
    """Base class: anything the user can fix (bad input, bad spec, endpoint down)."""

    exit_code = 1


class InputError(JudgeError):
    """A bad input record, reported as `path:line: field: what is wrong`."""

    exit_code = 2

    def __init__(self, path: str, line: int | None, field: str | None, message: str) -> None:
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"{field}: {message}" if field else message
        super().__init__(f"{where}: {what}")


class SpecError(JudgeError):
    """A judge spec or option that cannot be understood (`--judge ...`)."""

    exit_code = 2


class EndpointError(JudgeError):
    """An HTTP judge's endpoint is unusable (down, unauthorised, circuit breaker open)."""


class BudgetError(JudgeError):
    """A run would exceed a request/token budget the user set."""
