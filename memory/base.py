"""The contract every memory model follows: the `Memory` base class.

A memory runs a tape of episodes laid end to end in one call:

    y [T, H], final_state = module.apply(variables, x [T, D], start [T] bool, state=None)

with the state reset to the initial (zero) state wherever start[t] is set, before x[t] is read;
`state` (None: the initial state) is the state before row 0, so that acting one step at a time
(T = 1, state carried) and one pass over the whole tape give the same outputs. The rest of the
contract are plain methods that work on an unbound module (flax's `nn.nowrap`), so the training
loop can call them on the model it built without binding it to parameters:

    initial_state(input_dim)  the state before any step, for observations of size input_dim
    project(variables)        the parameter constraints, applied after each optimiser step
    diagnostics(inter)        scalars to log, from what the call sowed into 'intermediates'

and class attributes that say what the analysis code (plotting/dynamics.py) may read:

    state_name   the name of a memory state other than the output y ("M" for the MPN), or None
                 when the state is the output itself (the GRU's h)
    plastic      the params hold the scalars 'eta' (plasticity rate) and 'lam' (decay)

plus what benchmarks/scan.py times (see `scan_modes`, `associative`). A model is one module in
memory/ that subclasses `Memory`, plus one line in the registry (memory/__init__.py).
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax


class Memory(nn.Module):
    """Base class of the memory models: defaults for the contract's plain methods and attributes.

    A subclass defines its configuration as flax fields (they are the model's memory_kwargs) and
    an `@nn.compact __call__(x [T, D], start [T], state=None) -> (y [T, H], final_state)`.
    """
    # The contract's class attributes (ClassVar: not flax fields, so not keywords of the model).
    state_name: ClassVar[str | None] = None
    plastic: ClassVar[bool] = False
    # Evaluation strategies over time, for benchmarks/scan.py: the values of the model's `scan`
    # keyword to time (each as "<name>_<mode>"), and whether the model's one strategy is an
    # associative scan (timed as "<name>"). A model with neither is left out of that benchmark.
    scan_modes: ClassVar[tuple[str, ...]] = ()
    associative: ClassVar[bool] = False

    def __call__(self, x: jax.Array, start: jax.Array, state=None):
        """Run the tape x [T, D] with start flags [T]; returns y [T, H] and the final state."""
        raise NotImplementedError(f"{type(self).__name__} does not define __call__")

    @nn.nowrap
    def initial_state(self, input_dim: int):
        """The state before any step (a pytree of arrays) for observations of size input_dim."""
        raise NotImplementedError(f"{type(self).__name__} does not define initial_state")

    @nn.nowrap
    def project(self, variables: dict) -> dict:
        """Apply the parameter constraints to `module.init` output; none by default (identity).

        Pure and jittable; returns new dicts and leaves `variables` unchanged."""
        return variables

    @nn.nowrap
    def diagnostics(self, intermediates) -> dict[str, jax.Array]:
        """Scalars to log per call, read from the 'intermediates' this module sowed.

        `intermediates`: the mutable dict of apply(..., mutable=['intermediates']) (or its
        'intermediates' entry), with any vmap batch axes on the leaves, holding this module's
        entries at its top level. Returns {metric name: jnp scalar}; none by default. Jittable.
        """
        del intermediates
        return {}
