"""Exceptions that carry enough context for a one-line, actionable message."""

from __future__ import annotations


class BotguardError(Exception):
    """Base class; ``exit_code`` is what the CLI returns for it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(BotguardError):
    """One or more config problems, each already located (file:line key.path: message)."""

    exit_code = 2

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        self.problems = problems
        super().__init__("\n".join(problems), hint)


class InputError(BotguardError):
    """A log source cannot be read at all (missing file, unreadable)."""

    exit_code = 2


class RefusedError(BotguardError):
    """The run finished reading but refuses to produce a result (error ratio, blast radius)."""

    exit_code = 1


class ModelError(BotguardError):
    """A model artifact that does not match this botguard or cannot be loaded safely."""

    exit_code = 2
