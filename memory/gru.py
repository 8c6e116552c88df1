"""GRU baseline memory: a Flax GRU cell under a sequential scan with episode resets."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from memory.base import Memory


@jax.custom_batching.custom_vmap
def _qr(z: jax.Array):
    """(q, r) = jnp.linalg.qr of one matrix z [n, m]; under vmap, one LAPACK call per matrix."""
    q, r = jnp.linalg.qr(z)
    return q, r


@_qr.def_vmap
def _qr_one_at_a_time(axis_size, in_batched, z):
    # jaxlib 0.10.2 splits a batched LAPACK QR over XLA's CPU thread pool and blocks a pool
    # thread until its pieces are done. The GRU's three recurrent kernels are three such QRs,
    # which XLA may run at once: with every pool thread blocked the pieces never run and the
    # program hangs (README, "How it works"). A loop of single-matrix QRs never uses the pool,
    # and a batched LAPACK QR is that same loop, so the values are unchanged bit for bit.
    del axis_size
    if not in_batched[0]:
        return _qr(z), (False, False)
    return jax.lax.map(_qr, z), (True, True)


def orthogonal(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """flax's default recurrent-kernel initializer (`initializers.orthogonal()`: a uniformly
    random orthogonal matrix of `shape`, orthonormal along its last axis), value for value, but
    safe to vmap on the CPU (see `_qr_one_at_a_time`)."""
    n_rows, n_cols = math.prod(shape) // shape[-1], shape[-1]
    z = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)
    q, r = _qr(z)
    x = q * jnp.expand_dims(jnp.sign(jnp.diagonal(r)), -2)
    return jnp.reshape(x.T if n_rows < n_cols else x, shape)


class _ResetGRUStep(nn.Module):
    """One GRU step whose carry is zeroed before reading x_t when the step starts an episode."""
    hidden: int

    @nn.compact
    def __call__(self, h: jax.Array, inputs):
        x_t, start_t = inputs
        h = jnp.where(start_t, jnp.zeros_like(h), h)
        h, y = nn.GRUCell(features=self.hidden, recurrent_kernel_init=orthogonal, name='gru')(h, x_t)
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
