"""Memory models for recurrent Q-learning on tapes of episodes.

Every memory follows one contract:
    y [T, H], final_state = module.apply(variables, x [T, D], start [T] bool, state=None)
with the state reset to the initial (zero) state wherever start[t] is set, before x[t] is read.
Plain methods `initial_state(input_dim)` and `project(variables)` work on unbound modules.
"""

import dataclasses

import flax.linen as nn

from memory.gru import GRU
from memory.mpn import MPN
from memory.mpn_pre import MPNPre
from memory.qnetwork import QNetwork

_MODELS = {'gru': GRU, 'mpn': MPN, 'mpn_pre': MPNPre}
MEMORY_NAMES = tuple(sorted(_MODELS))


def _keywords(cls) -> list[str]:
    """The configuration fields of a memory class (flax's own 'parent' and 'name' excluded)."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in ('parent', 'name')]


def make_memory(name: str, **kwargs) -> nn.Module:
    """Build the memory model registered under `name` ("gru", "mpn", "mpn_pre") from keywords.

    Raises ValueError for an unknown name or keyword, listing what is allowed.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown memory model {name!r}; known: {', '.join(MEMORY_NAMES)}")
    cls = _MODELS[name]
    allowed = _keywords(cls)
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        raise ValueError(f"unknown keyword(s) {', '.join(bad)} for memory model {name!r}; "
                         f"allowed: {', '.join(allowed)}")
    return cls(**kwargs)


__all__ = ['GRU', 'MEMORY_NAMES', 'MPN', 'MPNPre', 'QNetwork', 'make_memory']
