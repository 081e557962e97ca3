"""The one error type for the user's mistakes: the command line prints it as one line and exits 2.

Anything else that escapes a command is a fault of ours or of the machine (a bug, out of memory):
exit 1, one line on the terminal and the full traceback in the run's ``log.txt`` (``--debug``
shows it on the terminal).
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave (recipe, data file, options, a busy run directory), phrased as
    ``field or file: what is wrong`` and, where there is one, the fix."""


class RecipeError(UserError, ValueError):
    """A recipe problem, phrased as ``field: what is wrong`` (raised by :mod:`xdistill.recipe` and the checks it
    runs; importable from there)."""
