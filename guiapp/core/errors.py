"""Domain errors. Their messages are shown to users as they are, so each one
names the problem and, where there is one, what to do about it."""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error the engine raises on purpose."""

    def __reduce__(self):
        """Errors cross process boundaries (workers) whole: their fields and
        words, whatever their constructors take."""
        return (restore_error, (type(self), self.args, dict(self.__dict__)))


class UserError(StudioError):
    """Bad input: a file, a folder, a setting. The CLI exits with code 2."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        if fix and not problem.rstrip().endswith((".", "!", "?", ":")):
            problem = problem.rstrip() + "."
        super().__init__(f"{problem} {fix}".strip())


class ModelError(UserError):
    """The model cannot be read, or cannot be quantized as asked."""


class ImageReadError(UserError):
    """One image file could not be decoded (datasets skip such files)."""

    def __init__(self, path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read image {path}: {reason}")


class DatasetError(UserError):
    """A calibration or evaluation folder is missing, empty or unreadable."""


class JobError(UserError):
    """A job document or a setting in it is invalid; ``field`` names it."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.detail = problem  # the problem without the field name
        super().__init__(f"{field}: {problem}", fix)


class OutputError(UserError):
    """The output cannot be written where asked."""


class Cancelled(StudioError):
    """The user cancelled. Nothing was written."""

    def __init__(self, message: str = "cancelled; nothing was written") -> None:
        super().__init__(message)


def restore_error(cls, args, state):
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc
