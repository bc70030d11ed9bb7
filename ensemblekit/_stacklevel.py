"""Warnings that point at the user's code, however deep in the package they are raised."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def external_stacklevel() -> int:
    """The ``stacklevel`` of :func:`warnings.warn` naming the first caller outside the package.

    Called from the function that issues the warning; frames of the package's own
    modules are skipped, so the warning is attributed to the user's line whatever
    the depth of the call (estimator, engine, worker helper). Threads and code run
    without a Python caller fall back to the warning function's caller.

    Returns
    -------
    stacklevel : int
        ``1`` names the function calling :func:`warnings.warn`, ``2`` its caller,
        and so on.

    Examples
    --------
    >>> external_stacklevel() >= 1
    True
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level if frame is not None else 2
