"""`cascade_det.Error`: the one base class of every error cascade_det raises for something a user can fix (a config
value, an output dir, a weights file, a dataset, a command-line value). Each subclass also derives from the built-in
exception a Detectron2 user would expect (ValueError, FileNotFoundError, KeyError, ...), so existing `except`
clauses keep working.

    try:
        run = Run.of(cfg)
    except cascade_det.Error as e:   # the message names the file or key and the fix
        print(e)

The commands (`train_net.py`, `python -m cascade_det.<tool>`) print such an error as its one- or two-line message
and exit with status 2 (`exit_on_user_error`); the traceback only with `--debug` or CASCADE_DET_DEBUG=1. Any other
exception is a bug and keeps its traceback.
"""

import os
import sys

__all__ = [
    "DEBUG_ENV",
    "USER_ERROR_EXIT",
    "add_debug_argument",
    "ConfigKeyError",
    "ConfigValueError",
    "Error",
    "InputError",
    "MissingFileError",
    "OutputExistsError",
    "OutputPathError",
    "UnreadableFileError",
    "WorkerStoppedError",
    "exit_on_user_error",
    "report_user_error",
]

DEBUG_ENV = "CASCADE_DET_DEBUG"
USER_ERROR_EXIT = 2  # the exit status of a command stopped by a user's mistake (argparse's, for bad arguments)


class Error(Exception):
    """A problem with what the user gave (config, files, data); the message names it and says how to fix it."""


class ConfigValueError(Error, ValueError):
    """A config value of the wrong type or range; the message names the key and what it expects."""


class ConfigKeyError(Error, KeyError):
    """A config key that does not exist; the message names it (and the keys it may have meant)."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""


class InputError(Error, ValueError):
    """A command-line value, image or file content that cannot be used; the message names it."""


class MissingFileError(Error, FileNotFoundError):
    """A file or folder the user named does not exist."""


class OutputExistsError(Error, FileExistsError):
    """A file a command would write exists already: nothing the user made is overwritten."""


class OutputPathError(Error, OSError):
    """An output path that cannot hold what a command writes: a file where a folder is needed, or a folder this
    user cannot write (read-only, disk full)."""


class UnreadableFileError(Error, OSError):
    """A file the user named exists but cannot be read or written (e.g. an image OpenCV cannot decode)."""


class WorkerStoppedError(Error, RuntimeError):
    """A process of a multi-process run stopped on a user error (printed by that process)."""


def add_debug_argument(parser):
    """--debug on an argparse parser: a user error is then shown with its traceback, not as its message alone."""
    parser.add_argument(
        "--debug", action="store_true", help=f"on a mistake in what was given, show the traceback too ({DEBUG_ENV}=1)"
    )
    return parser


def debugging(argv=None) -> bool:
    """Whether the user asked for tracebacks: --debug on the command line, or CASCADE_DET_DEBUG set (not 0)."""
    return "--debug" in (sys.argv if argv is None else argv) or os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def report_user_error(error: BaseException, prefix: str = "") -> None:
    """Print a user's mistake as its message, on stderr."""
    print(f"{prefix}{type(error).__name__}: {error}", file=sys.stderr)
    print(f"(for the traceback: --debug or {DEBUG_ENV}=1)", file=sys.stderr)


def exit_on_user_error(func, *args, **kwargs):
    """`func(*args, **kwargs)`; a `cascade_det.Error` is printed as its message and the process exits with status
    2, unless the user asked for tracebacks (`debugging`)."""
    try:
        return func(*args, **kwargs)
    except Error as e:
        if debugging():
            raise
        report_user_error(e)
        sys.exit(USER_ERROR_EXIT)
