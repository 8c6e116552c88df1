"""The exact Multi-Plasticity Network (Aitken & Mihalas 2023), as a sequential scan.

See shared/design/MPN.md. The post-synaptic term of the Hebbian update is h_t, which depends
on M_{t-1} through tanh, so the recurrence is not a monoid; a plain `jax.lax.scan` is exact.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from memory.inputs import layer_input_dim, layer_inputs

SQRT6 = math.sqrt(6.0)


def _uniform(limit: float):
    """Initializer for U(-limit, limit)."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -limit, limit)
    return init


def plastic_params(module: nn.Module, nx: int):
    """Create the slow weights shared by mpn and mpn_pre inside `module`'s compact method.

    Returns W [Nh, Nx] (Xavier-uniform), b [Nh] ~ U(±sqrt(6/Nh)), and the scalars eta, lam.
    """
    nh = module.hidden
    w = module.param('W', nn.initializers.xavier_uniform(), (nh, nx), jnp.float32)
    b = module.param('b', _uniform(math.sqrt(6.0 / nh)), (nh,), jnp.float32)
    eta_init = (_uniform(SQRT6) if module.eta_init is None
                else nn.initializers.constant(module.eta_init))
    eta = module.param('eta', eta_init, (), jnp.float32)
    lam_init = module.lam_max if module.lam_init is None else module.lam_init
    lam = module.param('lam', nn.initializers.constant(lam_init), (), jnp.float32)
    return w, b, eta, lam


def project_lam(variables: dict, lam_max: float) -> dict:
    """Clip the 'lam' param into [0, lam_max], the authors' projection after each optimiser step.

    Pure and jittable; returns new dicts and leaves `variables` unchanged.
    """
    params = dict(variables['params'])
    params['lam'] = jnp.clip(params['lam'], 0.0, lam_max)
    return {**variables, 'params': params}


class MPN(nn.Module):
    """Exact MPN layer: y, M_T = MPN(...).apply(variables, x [T, D], start [T], state=None).

    Per step: M = where(start, 0, M); h = tanh(b + (W ⊙ (1 + M)) x); M = λM + η h xᵀ
    (then clip to [-m_clamp, m_clamp] if set); y = h. State M: [hidden, Nx].
    """
    hidden: int = 100
    eta_init: float | None = 0.1  # None: U(-sqrt6, sqrt6) as the authors
    lam_max: float = 0.95
    lam_init: float | None = None  # None: lam_max
    m_clamp: float | None = None
    input_proj: int = 0
    input_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, start: jax.Array, state: jax.Array | None = None):
        """Run the tape x [T, D] with start flags [T]; returns y [T, hidden] and the final M."""
        x = layer_inputs(self, jnp.asarray(x, jnp.float32), self.input_proj, self.input_bias)
        w, b, eta, lam = plastic_params(self, x.shape[-1])
        m0 = jnp.zeros((self.hidden, x.shape[-1]), jnp.float32) if state is None else state

        def step(m, inputs):
            x_t, start_t = inputs
            m = jnp.where(start_t, 0.0, m)
            h = jnp.tanh(b + (w * (1.0 + m)) @ x_t)
            m = lam * m + eta * jnp.outer(h, x_t)
            if self.m_clamp is not None:
                m = jnp.clip(m, -self.m_clamp, self.m_clamp)
            return m, h

        m_final, y = jax.lax.scan(step, m0, (x, jnp.asarray(start, bool)))
        return y, m_final

    @nn.nowrap
    def initial_state(self, input_dim: int) -> jax.Array:
        """Zero modulation matrix M [hidden, Nx] for observations of size input_dim."""
        nx = layer_input_dim(input_dim, self.input_proj, self.input_bias)
        return jnp.zeros((self.hidden, nx), jnp.float32)

    @nn.nowrap
    def project(self, variables: dict) -> dict:
        """Apply the parameter constraint (λ into [0, lam_max]) to `module.init` output."""
        return project_lam(variables, self.lam_max)
