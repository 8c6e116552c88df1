"""QNetwork: a per-step MLP Q-head on top of any memory module."""

from typing import Sequence

import flax.linen as nn
import jax

from memory.base import Memory


class QNetwork(nn.Module):
    """q, state = QNetwork(memory, num_actions).apply(variables, x [T, D], start [T], state=None).

    The memory output [T, H] goes through relu Dense layers of sizes `head`, then a linear
    layer to q [T, num_actions]. Params: {'memory': ..., 'head_0': ..., 'head_out': ...}.
    """
    memory: Memory
    num_actions: int
    head: Sequence[int] = (64,)

    @nn.compact
    def __call__(self, x: jax.Array, start: jax.Array, state=None):
        """Q-values for each step of the tape and the memory's final state."""
        y, state = self.memory(x, start, state)
        for i, width in enumerate(self.head):
            y = nn.relu(nn.Dense(width, name=f'head_{i}')(y))
        # Xavier-uniform readout, as the MPN paper's linear readout.
        q = nn.Dense(self.num_actions, kernel_init=nn.initializers.xavier_uniform(),
                     name='head_out')(y)
        return q, state

    @nn.nowrap
    def initial_state(self, input_dim: int):
        """The memory's initial state for observations of size input_dim."""
        return self.memory.initial_state(input_dim)

    @nn.nowrap
    def project(self, variables: dict) -> dict:
        """Apply the memory's parameter constraints to its sub-dict; head params are untouched."""
        sub = {col: tree['memory'] for col, tree in variables.items() if 'memory' in tree}
        sub = self.memory.project(sub)
        return {col: ({**tree, 'memory': sub[col]} if col in sub else tree)
                for col, tree in variables.items()}

    @nn.nowrap
    def diagnostics(self, intermediates) -> dict[str, jax.Array]:
        """The memory's `diagnostics` of what it sowed, from apply(..., mutable=['intermediates'])
        (the returned dict or its 'intermediates' entry, vmap batch axes allowed); the head sows
        nothing. Returns {metric name: jnp scalar}. Jittable."""
        tree = intermediates.get('intermediates', intermediates)
        return self.memory.diagnostics(tree.get('memory', {}))
