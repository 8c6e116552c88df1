"""Checkpoints: one file per run program, written atomically, read back for --resume.

A checkpoint is a pickled dict of plain data only: numpy arrays (device arrays are fetched first,
and flax/optax pytrees are turned into state dicts), Python numbers, strings, lists and dicts. No
live object is stored: the neurogym backend saves its envs as their data (random-number states,
trial state, counters; see `collector.host.env_state`) and rebuilds them from the config on
resume, so every task survives a checkpoint, whatever closures its constructor keeps. Reading
goes through an unpickler that accepts nothing but those plain types, so a damaged or foreign
file is refused with one line instead of running code or failing deep inside the restore.

The file is written to a temporary file in the same folder, flushed to disk, then renamed over the
previous checkpoint, so a crash at any moment leaves either the old or the new checkpoint whole.
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from config import ConfigError

FILENAME = "checkpoint.pkl"
FORMAT = 3  # 1: the pickled host collector of earlier versions; 2: one schema per backend (not readable any more)

# The only globals a checkpoint may name: how numpy pickles arrays and scalars.
_ALLOWED = {
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
}


class CheckpointError(ConfigError):
    """A checkpoint that cannot be read or does not fit the run (one line, exit status 2)."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a checkpoint never holds")


def to_plain(tree: Any) -> Any:
    """A pytree (flax struct dataclasses included) as nested dicts of numpy arrays."""
    return jax.tree.map(np.asarray, serialization.to_state_dict(jax.device_get(tree)))


def from_plain(template: Any, plain: Any, what: str = "state") -> Any:
    """Inverse of to_plain, given a template pytree of the same structure. Raises CheckpointError
    when `plain` does not have the template's structure, shapes and dtypes."""
    try:
        restored = serialization.from_state_dict(template, plain)
        ok = jax.tree.structure(restored) == jax.tree.structure(template) and all(
            np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype
            for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(template))
        )
    except Exception as e:  # flax raises several kinds on a foreign structure
        raise CheckpointError(f"its {what} does not fit this run ({type(e).__name__}: {str(e)[:120]})") from None
    if not ok:
        raise CheckpointError(f"its {what} does not fit this run (shapes or types differ)")
    return restored


def save(folder: Path, data: dict) -> Path:
    """Atomically write `data` (plus the format number) as folder/checkpoint.pkl; returns its path.
    OSError (full disk, folder gone) propagates after the temporary file is removed; the previous
    checkpoint is then still whole."""
    folder = Path(folder)
    path = folder / FILENAME
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(dict(data, format=FORMAT), f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# Keys every checkpoint has, with their types; backend-specific keys are checked where used.
_REQUIRED = {"format": int, "backend": str, "batching": str, "config": dict, "seeds": list, "finished": bool,
             "rows": list, "run_id": str, "group": int}


def load(folder: Path) -> dict:
    """Read folder/checkpoint.pkl. Raises FileNotFoundError when there is none and CheckpointError
    when it is damaged, foreign or of another format."""
    path = Path(folder) / FILENAME
    raw = path.read_bytes()
    try:
        data = _PlainUnpickler(io.BytesIO(raw)).load()
    except Exception as e:  # a damaged pickle can raise almost anything
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a checkpoint of this program")
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: written by another version of this program (format {data.get('format')!r}, expected {FORMAT})")
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind):
            raise CheckpointError(f"{path}: damaged checkpoint (field '{key}' missing or not a {kind.__name__})")
    return data
