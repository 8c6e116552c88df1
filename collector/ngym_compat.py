"""Import neurogym on a machine without PyTorch.

neurogym 2.3.1 imports torch at package import time (its Monitor wrapper pulls in
activation probes that `import torch` / `from torch import nn`) although torch is not a
declared dependency and nothing this library uses needs it. Installing torch would drag in
gigabytes of CUDA wheels, so when torch is absent we put a minimal placeholder module in
`sys.modules` for the duration of `import neurogym` only, and remove it again afterwards so
that no other library (flax, chex, ...) can mistake it for a real torch.

This is the only place in the project that imports neurogym directly; everything else calls
`import_neurogym()`.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings

_NEUROGYM = None


def _placeholder(name: str) -> types.ModuleType:
    """A module whose every attribute is a fresh empty class (enough for type annotations
    and `isinstance` sets in neurogym's torch probes, which we never call)."""
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: type(attr, (), {})  # type: ignore[method-assign]
    module.__dict__["__neurogym_placeholder__"] = True
    return module


def import_neurogym():
    """Return the neurogym module, importing it without requiring torch."""
    global _NEUROGYM
    if _NEUROGYM is not None:
        return _NEUROGYM
    added = []
    if importlib.util.find_spec("torch") is None and "torch" not in sys.modules:
        torch = _placeholder("torch")
        torch.nn = _placeholder("torch.nn")
        sys.modules["torch"] = torch
        sys.modules["torch.nn"] = torch.nn
        added = ["torch", "torch.nn"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _NEUROGYM = importlib.import_module("neurogym")
    finally:
        for name in added:
            sys.modules.pop(name, None)
    return _NEUROGYM


def make_env(task: str, **kwargs):
    """neurogym.make(task, **kwargs) with gymnasium's metadata warning silenced.

    Raises ValueError naming the task when it is not a registered NeuroGym task."""
    ngym = import_neurogym()
    if task not in registered_tasks():
        raise ValueError(f"unknown NeuroGym task '{task}'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ngym.make(task, **kwargs)


def registered_tasks() -> list[str]:
    """Every NeuroGym task id that neurogym.make accepts."""
    return sorted(import_neurogym().envs.registration.all_envs())
