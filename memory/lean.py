"""The lean sequential scan of the exact MPN: the same function as a `lax.scan` of
`memory.deer.mpn_step`, with a hand-written backward pass, laid out for a CPU.

Per step t (M: [Nh, Nx], start flag s_t):

    M' = s_t ? 0 : M_{t-1};   h_t = tanh(b + W x_t + (W ⊙ M') x_t);   M_t = λ M' + η h_t x_tᵀ

Three things make it lean (measured with `python -m benchmarks.throughput`, see the README's
Throughput section); the arithmetic is unchanged:

- The slow-weight drive b + W x_t of every step is ONE matrix product over the whole tape, outside
  the scan; inside, only the modulated part (W ⊙ M') x_t is left, as an elementwise product and a
  sum, and W ⊙ (1 + M) is never formed.
- Inside the scan the state is held transposed, V = Mᵀ [Nx, Nh], so that every per-step operation
  runs along the hidden axis (Nh = 64..256, whole vector registers) instead of along Nx (10 or 11);
  the state handed in and out is M [Nh, Nx] as everywhere else.
- The backward pass is written by hand (`jax.custom_vjp`): the forward scan keeps one residual per
  step (M', which the backward pass needs) next to h, and the reverse scan carries the state's
  cotangent and elementwise sums for the gradients of W (through W ⊙ M') and λ, emitting the
  per-step drive cotangents; the rest (b, the W x part of W, η, x) are whole-tape products after
  it, and nothing is reduced to a scalar or along Nh inside the loop. The gain over the plain
  scan differentiated by JAX is measured in the README's Throughput section.

Only reverse mode is defined (custom_vjp: grad, vjp, jacrev; not jvp or jacfwd). The clamp
(MPN.m_clamp) is not handled here: MPN then takes the plain scan.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def _modulated_scan(u, eta, lam, a0, x, start, v0):
    """h [T, Nh] and the final V [Nx, Nh] of the scan. u = Wᵀ [Nx, Nh]; a0 [T, Nh] = b + W x_t;
    x [T, Nx]; start [T] bool; v0 [Nx, Nh] = M_{-1}ᵀ."""
    (h, v_final), _ = _forward(u, eta, lam, a0, x, start, v0)
    return h, v_final


def _forward(u, eta, lam, a0, x, start, v0):
    def step(v, inputs):
        x_t, s_t, a0_t = inputs
        v = jnp.where(s_t, jnp.zeros_like(v), v)
        h = jnp.tanh(a0_t + jnp.sum(u * v * x_t[:, None], axis=0))
        return lam * v + eta * x_t[:, None] * h[None, :], (h, v)

    v_final, (h, v_prev) = jax.lax.scan(step, v0, (x, start, a0))
    return (h, v_final), (u, eta, lam, x, start, h, v_prev)


def _backward(res, cotangents):
    u, eta, lam, x, start, h, v_prev = res
    dh, dv_final = cotangents

    def step(carry, inputs):
        dv, du, dlam = carry  # dv: cotangent of V_t; du, dlam [Nx, Nh]: summed over steps > t
        dh_t, x_t, s_t, h_t, vp = inputs
        g = jnp.sum(x_t[:, None] * dv, axis=0)  # [Nh]: dV_t x_t, the Hebbian term's pull on h_t
        da = (dh_t + eta * g) * (1.0 - h_t * h_t)  # cotangent of the pre-activation
        dlam = dlam + dv * vp  # reduced once after the loop: a sum per step costs more than the step
        xa = x_t[:, None] * da[None, :]  # [Nx, Nh]
        du = du + xa * vp
        dvp = lam * dv + u * xa
        return (jnp.where(s_t, jnp.zeros_like(dvp), dvp), du, dlam), (da, g, dv)

    zero = (dv_final, jnp.zeros_like(u), jnp.zeros_like(u))
    (dv0, du, dlam), (da, g, dv) = jax.lax.scan(step, zero, (dh, x, start, h, v_prev), reverse=True)
    deta = jnp.sum(h * g)
    # dx_t's modulated and Hebbian parts, after the loop from the stacked cotangents (a reduction
    # along Nh inside the loop is slow; XLA drops all of it, and the dv stack, when nothing asks
    # for dx, as in the loss, where the inputs are observations)
    dx = jnp.einsum('tki,ki,ti->tk', v_prev, u, da) + eta * jnp.einsum('tki,ti->tk', dv, h)
    return du, deta, jnp.sum(dlam).astype(lam.dtype), da, dx, None, dv0


def _fwd(u, eta, lam, a0, x, start, v0):
    return _forward(u, eta, lam, a0, x, start, v0)


_modulated_scan.defvjp(_fwd, _backward)


def lean_mpn(params, x: jax.Array, start: jax.Array, m0: jax.Array):
    """The exact MPN (no clamp) over a tape: (y [T, Nh], M_T [Nh, Nx]).

    params = (W [Nh, Nx], b [Nh], eta [], lam []); x [T, Nx] layer inputs; start [T] bool;
    m0 [Nh, Nx] the state before step 0. Same values and gradients as
    `memory.mpn.plain_sequential(params, x, start, m0, None)`."""
    w, b, eta, lam = params
    a0 = x @ w.T + b  # the slow weights' drive, every step at once (JAX differentiates it)
    h, v_final = _modulated_scan(w.T, eta, lam, a0, x, jnp.asarray(start, bool), m0.T)
    return h, v_final.T
