"""Memory models for recurrent Q-learning on tapes of episodes: the registry (no JAX import here).

    from memory import QNetwork, make_memory
    net = QNetwork(make_memory("mpn", hidden=64), num_actions=3)

Every model follows the contract of `memory.base.Memory`:
    y [T, H], final_state = module.apply(variables, x [T, D], start [T] bool, state=None)
with the state reset to the initial (zero) state wherever start[t] is set, before x[t] is read,
and plain methods `initial_state(input_dim)`, `project(variables)` and
`diagnostics(intermediates)` that work on unbound modules.

`MODELS` has one line per model: its name (model.memory in a config), the module under memory/
that defines its class, the class, a one-line description, and the tuned memory_kwargs that a
config gets for every keyword it does not set (see the README's tuning record). Config, the
benchmarks and plotting read their model lists from here. Adding a model = one module in memory/
(a `Memory` subclass), one line below, and its tests (tests/test_memory_contract.py covers every
registered model). Modules are imported on first use, so importing this package costs nothing.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import NamedTuple


class ModelSpec(NamedTuple):
    name: str  # model.memory in a config
    module: str  # memory/<module>.py
    class_name: str  # the Memory subclass in that module
    description: str  # one line, for config docs and help texts
    defaults: dict  # tuned memory_kwargs, under the keywords a config sets


# One line per model, in the order tables and figures show them.
MODELS = (
    ModelSpec("mpn", "mpn", "MPN", "exact MPN",
              {"hidden": 64, "input_proj": 10, "input_bias": True, "eta_init": 0.5}),
    ModelSpec("mpn_pre", "mpn_pre", "MPNPre", "MPNpre, associative scan",
              {"hidden": 64, "input_proj": 10, "input_bias": True, "eta_init": 0.5}),
    ModelSpec("gru", "gru", "GRU", "GRU baseline",
              {"hidden": 64}),
)
_SPECS = {spec.name: spec for spec in MODELS}
MEMORY_ORDER = tuple(spec.name for spec in MODELS)  # display order
MEMORY_NAMES = tuple(sorted(_SPECS))


def model_class(name: str) -> type:
    """The `Memory` subclass registered under `name` (its module is imported on first use).

    Raises ValueError for an unknown name, listing the known ones."""
    if name not in _SPECS:
        raise ValueError(f"unknown memory model {name!r}; known: {', '.join(MEMORY_NAMES)}")
    spec = _SPECS[name]
    return getattr(importlib.import_module(f"memory.{spec.module}"), spec.class_name)


def _keywords(cls) -> list[str]:
    """The configuration fields of a memory class (flax's own 'parent' and 'name' excluded)."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in ('parent', 'name')]


def make_memory(name: str, **kwargs):
    """Build the memory model registered under `name` (one of MEMORY_NAMES) from keywords.

    Raises ValueError for an unknown name or keyword, listing what is allowed.
    """
    cls = model_class(name)
    allowed = _keywords(cls)
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        raise ValueError(f"unknown keyword(s) {', '.join(bad)} for memory model {name!r}; "
                         f"allowed: {', '.join(allowed)}")
    return cls(**kwargs)


# Classes importable from the package, loaded on first access (PEP 562).
_LAZY = {'Memory': 'memory.base', 'QNetwork': 'memory.qnetwork',
         **{spec.class_name: f"memory.{spec.module}" for spec in MODELS}}


def __getattr__(attr: str):
    if attr in _LAZY:
        return getattr(importlib.import_module(_LAZY[attr]), attr)
    raise AttributeError(f"module 'memory' has no attribute {attr!r}")


__all__ = ['MEMORY_NAMES', 'MEMORY_ORDER', 'MODELS', 'ModelSpec', 'make_memory', 'model_class', *_LAZY]
