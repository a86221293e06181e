"""`cascade_det.Error`: the one base class of every error cascade_det raises for something a user can fix (a config
value, an output dir, a weights file, a dataset). Each subclass also derives from the built-in exception a
Detectron2 user would expect (ValueError, FileExistsError, ...), so existing `except` clauses keep working.

    try:
        run = Run.of(cfg)
    except cascade_det.Error as e:   # the message names the file or key and the fix
        print(e)
"""

__all__ = ["Error"]


class Error(Exception):
    """A problem with what the user gave (config, files, data); the message names it and says how to fix it."""
