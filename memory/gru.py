"""GRU baseline memory: a Flax GRU cell under a sequential scan with episode resets."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memory.base import Memory


class _ResetGRUStep(nn.Module):
    """One GRU step whose carry is zeroed before reading x_t when the step starts an episode."""
    hidden: int

    @nn.compact
    def __call__(self, h: jax.Array, inputs):
        x_t, start_t = inputs
        h = jnp.where(start_t, jnp.zeros_like(h), h)
        h, y = nn.GRUCell(features=self.hidden, name='gru')(h, x_t)
        return h, y


class GRU(Memory):
    """GRU memory: y, h_T = GRU(hidden).apply(variables, x [T, D], start [T], state=None).

    y [T, hidden] is the hidden state after each step; state h: [hidden], the output itself
    (state_name None). No parameter constraints (`project` is the identity) and nothing to log.
    """
    hidden: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, start: jax.Array, state: jax.Array | None = None):
        """Run the tape x [T, D] with start flags [T]; returns y [T, hidden] and the final h."""
        h0 = jnp.zeros((self.hidden,), jnp.float32) if state is None else state
        # The same cell params serve every step, so they are broadcast, not scanned.
        scan = nn.scan(_ResetGRUStep, variable_broadcast='params',
                       split_rngs={'params': False}, in_axes=0, out_axes=0)
        h, y = scan(self.hidden, name='cell')(
            h0, (jnp.asarray(x, jnp.float32), jnp.asarray(start, bool)))
        return y, h

    @nn.nowrap
    def initial_state(self, input_dim: int) -> jax.Array:
        """Zero hidden state [hidden] (independent of the observation size)."""
        del input_dim
        return jnp.zeros((self.hidden,), jnp.float32)
