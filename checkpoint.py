"""Checkpoints: one file per run program, written atomically, read back for --resume.

A checkpoint is a pickled dict of plain data: numpy arrays (device arrays are fetched first, and
flax/optax pytrees are turned into state dicts so that no function or module is pickled), Python
numbers and strings, and for the neurogym backend the pickled host collector (the envs and their
random streams). It is written to a temporary file in the same folder, flushed to disk, then
renamed over the previous checkpoint, so a crash at any moment leaves either the old or the new
checkpoint whole.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

FILENAME = "checkpoint.pkl"


def to_plain(tree: Any) -> Any:
    """A pytree (flax struct dataclasses included) as nested dicts of numpy arrays."""
    return jax.tree.map(np.asarray, serialization.to_state_dict(jax.device_get(tree)))


def from_plain(template: Any, plain: Any) -> Any:
    """Inverse of to_plain, given a template pytree of the same structure."""
    return serialization.from_state_dict(template, plain)


def save(folder: Path, data: dict) -> Path:
    """Atomically write `data` as folder/checkpoint.pkl; returns its path."""
    folder = Path(folder)
    path = folder / FILENAME
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(folder: Path) -> dict:
    """Read folder/checkpoint.pkl (raises FileNotFoundError when there is none)."""
    with open(Path(folder) / FILENAME, "rb") as f:
        return pickle.load(f)
