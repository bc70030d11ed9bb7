"""Where datasets live on disk."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["get_data_home"]

ENV_VAR = "ENSEMBLEKIT_DATA"


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder that holds ensemblekit's datasets.

    The folder is, in order of precedence: ``data_home`` when given, the environment variable
    ``ENSEMBLEKIT_DATA`` when set and not empty, else ``~/ensemblekit_data``. A leading ``~``
    is expanded. The folder is not created; loaders create it when they download.

    Parameters
    ----------
    data_home : str or os.PathLike, default=None
        Explicit folder; overrides the environment variable.

    Returns
    -------
    path : pathlib.Path
        The data folder.

    Examples
    --------
    >>> get_data_home("/data/sets").as_posix()
    '/data/sets'
    >>> get_data_home("~/my_data") == Path.home() / "my_data"
    True
    """
    if data_home is None:
        data_home = os.environ.get(ENV_VAR) or Path("~") / "ensemblekit_data"
    return Path(data_home).expanduser()
