"""Member cache: trained members stored on disk, keyed by what determines them.

A member is a deterministic function of the training data, the estimator's
parameters (routed ones included) and its seed, so it can be stored once trained
and loaded whenever the same member is asked for again, for example by every
candidate of a ``GridSearchCV`` over ``n_estimators`` (member seeds do not depend
on ``n_estimators``).

Each entry is one file ``<location>/ensemblekit_members/<key>.ekm``: a header line
with the entry's key and the SHA-256 of its payload, then the payload (the member,
serialised with :func:`torch.save`). An entry is unpickled only after its header
names the requested key and its payload matches the checksum; anything else (a
truncated or corrupted file, a file written for another member, a file that is not
an entry, a link) is ignored with a warning and the member is trained again.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch
from sklearn.utils.validation import check_memory
from torch import nn

from .._stacklevel import external_stacklevel

#: Version of the entry layout; entries of another version are ignored.
FORMAT = 1
MAGIC = b"ensemblekit member cache\n"
SUBFOLDER = "ensemblekit_members"
SUFFIX = ".ekm"

#: Parameters that do not change what a member learns. The device enters the key
#: by its type only (``cpu`` or ``cuda``), so members move between GPUs freely. A
#: recorded trajectory is stored with its member, and checked against the requested
#: epochs when loaded.
NOT_IN_KEY = frozenset({
    "n_estimators", "n_jobs", "devices", "device", "memory", "verbose",
    "random_state", "warm_start", "max_members_per_pass", "checkpoint_epochs",
    "checkpoint_dir",
})


class MemberCache:
    """A folder of trained members.

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder holding the entries; created on the first store.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    @classmethod
    def from_memory(cls, memory: Any) -> MemberCache | None:
        """The cache of a ``memory`` parameter, or None when caching is off.

        Parameters
        ----------
        memory : None, str or joblib.Memory
            scikit-learn's convention (as in :class:`~sklearn.pipeline.Pipeline`):
            a folder, or a :class:`joblib.Memory` whose ``location`` is used.

        Raises
        ------
        ValueError
            If ``memory`` is of another type, or a Memory-like object without a
            ``location`` folder.
        """
        memory = check_memory(memory)
        location = getattr(memory, "location", None)
        if location is None:
            if isinstance(memory, joblib.Memory):
                return None
            raise ValueError(
                "memory must be None, a folder path or a joblib.Memory with a location; "
                f"got {type(memory).__name__}, which has no `location` folder."
            )
        return cls(Path(os.fspath(location)).expanduser() / SUBFOLDER)

    def path(self, key: str) -> Path:
        """File of the entry ``key`` (a hexadecimal digest)."""
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"A cache key is a hexadecimal digest, got {key!r}.")
        return self.folder / f"{key}{SUFFIX}"

    def load(self, key: str, device: str = "cpu") -> dict[str, Any] | None:
        """The entry stored under ``key``, its tensors on ``device``, or None.

        A missing entry returns None silently; an entry that cannot be trusted
        returns None with a UserWarning.
        """
        path = self.path(key)
        if not os.path.lexists(path):
            return None
        try:
            payload = self._read_checked(path, key)
            record = torch.load(io.BytesIO(payload), map_location=device, weights_only=False)
            if not isinstance(record, dict) or record.get("key") != key or "net" not in record:
                raise _BadEntry("its content is not the member it claims to be")
        except Exception as exc:  # any unreadable entry is retrained
            warnings.warn(
                f"Ignoring member cache entry {path}: {exc}. The member is trained again "
                "and the entry replaced.",
                UserWarning,
                stacklevel=external_stacklevel(),
            )
            return None
        return record

    def store(self, key: str, record: dict[str, Any]) -> None:
        """Write ``record`` under ``key`` atomically; a failure only warns."""
        path = self.path(key)
        buffer = io.BytesIO()
        try:
            torch.save({**record, "key": key}, buffer)
            payload = buffer.getvalue()
            header = json.dumps({
                "format": FORMAT, "key": key, "sha256": hashlib.sha256(payload).hexdigest(),
            }).encode() + b"\n"
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=SUFFIX)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(MAGIC + header + payload)
                # Atomic: a concurrent reader sees the old entry or the new one, never half.
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except Exception as exc:  # caching must never break a fit
            warnings.warn(f"Could not store member cache entry {path}: {exc}.", UserWarning,
                          stacklevel=external_stacklevel())

    def _read_checked(self, path: Path, key: str) -> bytes:
        # Only regular files directly inside the folder are read: a link could lead
        # anywhere on the machine.
        if path.is_symlink() or not path.is_file():
            raise _BadEntry("it is not a regular file")
        if path.resolve().parent != self.folder.resolve():
            raise _BadEntry("it lies outside the cache folder")
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            raise _BadEntry("it is not an ensemblekit member cache entry")
        header_end = data.find(b"\n", len(MAGIC))
        if header_end < 0:
            raise _BadEntry("its header is truncated")
        try:
            header = json.loads(data[len(MAGIC):header_end])
        except ValueError as exc:
            raise _BadEntry("its header is corrupted") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise _BadEntry(f"it has another layout than version {FORMAT}")
        if header.get("key") != key:
            raise _BadEntry("it was written for another member")
        payload = data[header_end + 1:]
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise _BadEntry("its content does not match its checksum (corrupted or truncated)")
        return payload


class _BadEntry(Exception):
    """A cache entry that must not be loaded."""


def member_keys(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    seeds: Sequence[int],
    device: str,
    sample_weight: np.ndarray | None = None,
    extras: Sequence[Any] | None = None,
) -> list[str]:
    """One cache key per seed: a digest of everything that determines a member.

    The key covers the library and torch versions, the estimator class, every
    parameter except those in :data:`NOT_IN_KEY` (routed parameters included;
    module instances and tensors by their values), the source of the module class
    when it can be read, the training data (inputs, encoded targets, classes, row
    weights), the device type and the member's seed, and ``extras[i]`` when given:
    what else sets member ``i`` apart (its early-stopping validation rows, a
    one-epoch first ``partial_fit`` call).

    Raises
    ------
    TypeError or pickle.PicklingError
        If a parameter cannot be hashed (for example a lambda).
    """
    from .. import __version__

    params = {
        name: value for name, value in estimator.get_params(deep=False).items()
        if name not in NOT_IN_KEY
    }
    module = getattr(estimator, "module", None)
    common = {
        "format": FORMAT,
        "versions": (__version__, torch.__version__),
        "estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        "params": _canonical(params),
        "module_source": _source(module) if isinstance(module, type) else None,
        # Regressors have no classes_; their y is the (standardised) training target.
        "data": (joblib.hash(X), joblib.hash(y),
                 joblib.hash(np.asarray(getattr(estimator, "classes_", ()))),
                 None if sample_weight is None else joblib.hash(sample_weight)),
        "device": torch.device(device).type,
    }
    base = joblib.hash(common)
    if extras is None or all(_plain(e) for e in extras):
        return [joblib.hash((base, int(seed))) for seed in seeds]
    return [joblib.hash((base, int(seed), extra)) for seed, extra in zip(seeds, extras)]


def _plain(extra: Any) -> bool:
    # A full fit without early stopping keeps the keys it always had.
    return extra is None or extra == (False, None)


def _canonical(value: Any) -> Any:
    # Pickles of tensors differ between equal copies, so GridSearchCV's clones would
    # never hit: tensors and modules are hashed by their values instead.
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().cpu().numpy())
    if isinstance(value, nn.Module):
        state = {k: v.detach().cpu().numpy() for k, v in value.state_dict().items()}
        return ("module", f"{type(value).__module__}.{type(value).__qualname__}",
                repr(value), state, _source(type(value)))
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_canonical(v) for v in value])
    return value


def _source(cls: type) -> str | None:
    # A module class edited between runs must not hit members of its old version.
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return None
