"""MPNpre: the MPN variant whose post-synaptic term is the constant 1/sqrt(Nh).

Every row of M is then equal, so the state is a vector m [Nx] and its recurrence
m_t = λ m_{t-1} + (η/sqrt(Nh)) x_t is linear: an exact monoid, run with
`jax.lax.associative_scan` in O(log T) depth (see docs/mpn.md).
"""

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from memory.base import Memory
from memory.inputs import layer_input_dim, layer_inputs
from memory.mpn import plastic_params, project_lam
from memory.scan import reset_linear_scan


class MPNPre(Memory):
    """MPNpre layer: y, m_T = MPNPre(...).apply(variables, x [T, D], start [T], state=None).

    h_t = tanh(b + W ((1 + m_{t-1}) ⊙ x_t)); m_t = λ m_{t-1} + (η/sqrt(Nh)) x_t;
    m_{t-1} := 0 wherever start[t] is set; y = h. State m: [Nx].
    """
    state_name: ClassVar[str | None] = 'm'
    plastic: ClassVar[bool] = True
    associative: ClassVar[bool] = True  # one resettable associative scan, O(log T) depth
    hidden: int = 100
    eta_init: float | None = 0.1  # None: U(-sqrt6, sqrt6) as the authors
    lam_max: float = 0.95
    lam_init: float | None = None  # None: lam_max
    input_proj: int = 0
    input_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, start: jax.Array, state: jax.Array | None = None):
        """Run the tape x [T, D] with start flags [T]; returns y [T, hidden] and the final m."""
        x = layer_inputs(self, jnp.asarray(x, jnp.float32), self.input_proj, self.input_bias)
        w, b, eta, lam = plastic_params(self, x.shape[-1])
        start = jnp.asarray(start, bool)
        m0 = jnp.zeros(x.shape[-1:], jnp.float32) if state is None else state

        decay = jnp.broadcast_to(lam, start.shape)
        m = reset_linear_scan(decay, (eta / math.sqrt(self.hidden)) * x, start, m0)
        # h_t reads the exclusive value m_{t-1}: shift by one step, zero at episode starts.
        m_prev = jnp.concatenate([m0[None], m[:-1]], axis=0)
        m_prev = jnp.where(start[:, None], 0.0, m_prev)
        y = jnp.tanh(b + ((1.0 + m_prev) * x) @ w.T)
        return y, m[-1]

    @nn.nowrap
    def initial_state(self, input_dim: int) -> jax.Array:
        """Zero modulation vector m [Nx] for observations of size input_dim."""
        return jnp.zeros((layer_input_dim(input_dim, self.input_proj, self.input_bias),),
                         jnp.float32)

    @nn.nowrap
    def project(self, variables: dict) -> dict:
        """Apply the parameter constraint (λ into [0, lam_max]) to `module.init` output."""
        return project_lam(variables, self.lam_max)
