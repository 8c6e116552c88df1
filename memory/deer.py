"""Newton (DEER) solver for the exact MPN recurrence over a whole tape (docs/mpn.md,
"What is, and is not, an associative scan", item 2).

The unknowns are all states M_0 .. M_{T-1} (M_t: the state after step t, [Nh, Nx]). One step is

    F_t(M) = clip(λ R_t(M) + η h x_tᵀ),   h = tanh(b + (W ⊙ (1 + R_t(M))) x_t),
    R_t(M) = start_t ? 0 : M

and the tape is the fixed point M_t = F_t(M_{t-1}), M_{-1} = the initial state m0. A Newton step
linearises every F_t around the current guess and solves the *linear* recurrence

    M_t = J_t M_{t-1} + c_t,   c_t = F_t(M*_{t-1}) - J_t M*_{t-1}

with `jax.lax.associative_scan` over affine maps (A1, c1) • (A2, c2) = (A2 A1, A2 c1 + c2). Rows
of M are independent, so J_t is block diagonal with one dense Nx × Nx block per row i:

    J_{t,i} = diag(mask_{t,i}) (λ I + η tanh'(a_{t,i}) x_t (W_i ⊙ x_t)ᵀ)

(mask: 1 where the clamp is inactive). Step 0 and every episode start are cuts: J_t = 0 and
c_t = F_t(m0 or 0), so the scan needs no reset flags and no state is prepended. Each Newton step
makes at least one more step of every episode exact, and convergence is quadratic near the
solution.

Gradients (`implicit_states`): the solver runs under stop_gradient; the converged tape is then
passed through a custom_vjp whose backward pass is the implicit function theorem. With
L = I - (shifted J), the fixed point satisfies L dM = ∂F/∂θ dθ, so for a cotangent G on the
states the adjoint μ solves the *transposed* recurrence backwards in time

    μ_t = G_t + J_{t+1}ᵀ μ_{t+1}   (μ_{T-1} = G_{T-1})

(one reverse associative scan with the same J), and the parameter / input / initial-state
cotangents are a single parallel VJP of F over all steps, evaluated at M*_{t-1} with cotangent μ.
This is exactly backpropagation through time at the fixed point (verified against the
sequential `lax.scan` in tests/test_mpn_parallel.py). It is the gradient of a last Newton step
taken with live parameters from the stopped-gradient M* (same numbers, checked numerically when
this was written), but cheaper than differentiating through that step's associative scan (one
reverse scan and one VJP instead of the scan's own backward pass; docs/mpn.md, "Measured"); a
last step of F alone, F(stop_gradient(M*_{t-1})), is NOT BPTT (it drops the dependence through
M_{t-1}). Only reverse mode is defined (custom_vjp); `jax.jvp` / `jacfwd` through the parallel
path is not supported.

Cost: per Newton step O(T Nh Nx³) work and O(T Nh Nx²) memory (the dense J blocks) at
O(log T) depth, against O(T Nh Nx) work at O(T) depth for the sequential scan.
"""

from functools import partial

import jax
import jax.numpy as jnp

Params = tuple  # (W [Nh, Nx], b [Nh], eta [], lam [])


def mpn_step(params: Params, m: jax.Array, x_t: jax.Array, start_t: jax.Array,
             m_clamp: float | None):
    """One exact MPN step: returns (M_t, h_t) from M_{t-1} [Nh, Nx], x_t [Nx], start_t []."""
    w, b, eta, lam = params
    m = jnp.where(start_t, 0.0, m)
    h = jnp.tanh(b + (w * (1.0 + m)) @ x_t)
    m = lam * m + eta * jnp.outer(h, x_t)
    if m_clamp is not None:
        m = jnp.clip(m, -m_clamp, m_clamp)
    return m, h


def step_all(params: Params, m_prev: jax.Array, x: jax.Array, start: jax.Array,
             m_clamp: float | None):
    """`mpn_step` at every t at once: m_prev [T, Nh, Nx] -> (M [T, Nh, Nx], h [T, Nh])."""
    return jax.vmap(mpn_step, in_axes=(None, 0, 0, 0, None))(params, m_prev, x, start, m_clamp)


def shift(m: jax.Array, m0: jax.Array) -> jax.Array:
    """The exclusive tape M_{t-1}: [m0, M_0, .., M_{T-2}]."""
    return jnp.concatenate([m0[None], m[:-1]], axis=0)


def jacobians(params: Params, m_prev: jax.Array, x: jax.Array, start: jax.Array,
              m_clamp: float | None) -> jax.Array:
    """Per-row blocks J [T, Nh, Nx, Nx] of ∂F_t/∂M_{t-1}; zero at step 0 and episode starts.

    J[t, i, k, j] = mask[t, i, k] (λ δ_kj + η tanh'(a_{t,i}) x_{t,k} W_{ij} x_{t,j}).
    Step 0 is a cut because M_{-1} (the given initial state) is not an unknown.
    """
    w, b, eta, lam = params
    cut = start.at[0].set(True)
    m_prev = jnp.where(start[:, None, None], 0.0, m_prev)
    a = b + jnp.einsum('thn,tn->th', w * (1.0 + m_prev), x)
    dh = 1.0 - jnp.tanh(a) ** 2
    u = (eta * dh)[:, :, None] * x[:, None, :]             # [T, Nh, Nx], index k
    v = w[None] * x[:, None, :]                            # [T, Nh, Nx], index j
    eye = jnp.eye(x.shape[-1], dtype=u.dtype)
    jac = lam * eye + u[..., :, None] * v[..., None, :]
    if m_clamp is not None:
        pre = lam * m_prev + eta * jnp.tanh(a)[:, :, None] * x[:, None, :]
        inside = (pre > -m_clamp) & (pre < m_clamp)       # clip's derivative (ties aside)
        jac = jnp.where(inside[..., None], jac, 0.0)
    return jnp.where(cut[:, None, None, None], 0.0, jac)


def _affine(left, right):
    """(A1, c1) • (A2, c2) = (A2 A1, A2 c1 + c2): first apply left, then right."""
    a1, c1 = left
    a2, c2 = right
    return a2 @ a1, jnp.einsum('...ij,...j->...i', a2, c1) + c2


def linear_solve(jac: jax.Array, c: jax.Array, reverse: bool = False) -> jax.Array:
    """All M_t of M_t = J_t M_{t-1} + c_t (J_0 must be 0), via an associative scan.

    With reverse=True, the recurrence runs from the end: M_t = J_t M_{t+1} + c_t (J_{T-1} = 0).
    jac: [T, Nh, Nx, Nx]; c: [T, Nh, Nx].
    """
    _, m = jax.lax.associative_scan(_affine, (jac, c), reverse=reverse)
    return m


def residual(m: jax.Array, f: jax.Array) -> jax.Array:
    """Scale-aware fixed-point residual max|M - F(M_prev)| / max(1, max|F(M_prev)|)."""
    return jnp.max(jnp.abs(m - f)) / jnp.maximum(1.0, jnp.max(jnp.abs(f)))


def initial_guess(params: Params, x: jax.Array, start: jax.Array, m0: jax.Array,
                  m_clamp: float | None) -> jax.Array:
    """A cheap linear guess: the Hebbian recurrence driven by the unmodulated activity
    tanh(b + W x_t) (an exact monoid, scalar decay), resets and m0 included."""
    w, b, eta, lam = params
    u = eta * jnp.tanh(b + x @ w.T)[:, :, None] * x[:, None, :]
    # Cuts as in the Newton steps: decay 0 at step 0 and at starts, m0 folded into step 0. A
    # plain associative scan (no reset flags) compiles much faster than memory.scan's.
    decay = jnp.where(start, 0.0, lam * jnp.ones(start.shape, u.dtype))
    u = u.at[0].add(decay[0] * m0)
    _, m = jax.lax.associative_scan(
        lambda l, r: (l[0] * r[0], r[0][:, None, None] * l[1] + r[1]), (decay.at[0].set(0.0), u))
    if m_clamp is not None:
        m = jnp.clip(m, -m_clamp, m_clamp)
    return m


def newton_solve(params: Params, x: jax.Array, start: jax.Array, m0: jax.Array,
                 m_clamp: float | None, max_iters: int, tol: float):
    """Newton iterations from `initial_guess`, at most max_iters, under stop_gradient.

    Stops once residual <= tol, after one more (polishing) step unless the residual is already
    <= tol / 100: Newton converges quadratically, so that step takes the tape from "within tol"
    to the floating-point floor at the price of one iteration, and outputs and gradients then
    match the sequential scan to rounding error rather than to ~tol / (1 - λ). A non-finite
    residual stops the loop at once (it can only fail the check).
    Returns (M [T, Nh, Nx], residual [], iterations used []).
    """
    params, x, m0 = jax.lax.stop_gradient((params, x, m0))

    def evaluate(m):  # F at the guess (reused by the next Newton step) and the residual
        f, _ = step_all(params, shift(m, m0), x, start, m_clamp)
        return f, residual(m, f)

    def body(carry):
        m, f, r, _, k = carry
        m_prev = shift(m, m0)
        jac = jacobians(params, m_prev, x, start, m_clamp)
        c = f - jnp.einsum('thij,thj->thi', jac, m_prev)
        m = linear_solve(jac, c)
        return (m, *evaluate(m), r, k + 1)

    def cond(carry):
        _, _, r, r_prev, k = carry
        done = (~jnp.isfinite(r)) | ((r <= tol) & ((r <= 0.01 * tol) | (r_prev <= tol)))
        return (k < max_iters) & ~done

    m = initial_guess(params, x, start, m0, m_clamp)
    f, r = evaluate(m)
    m, _, r, _, k = jax.lax.while_loop(
        cond, body, (m, f, r, jnp.full_like(r, jnp.inf), jnp.int32(0)))
    return m, r, k


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def implicit_states(m_clamp, m_star, params, x, start, m0):
    """Identity on the converged tape M*; its VJP is the implicit-function-theorem gradient
    (the transposed linear recurrence backwards in time, see the module docstring)."""
    del params, x, start, m0
    return m_star


def _implicit_fwd(m_clamp, m_star, params, x, start, m0):
    return m_star, (m_star, params, x, start, m0)


def _implicit_bwd(m_clamp, saved, g):
    m_star, params, x, start, m0 = saved
    m_prev = shift(m_star, m0)
    jac = jacobians(params, m_prev, x, start, m_clamp)
    # μ_t = G_t + J_{t+1}ᵀ μ_{t+1}: the reverse scan's element t carries J_{t+1}ᵀ (0 at T-1).
    jac_next_t = jnp.concatenate([jnp.swapaxes(jac[1:], -1, -2), jnp.zeros_like(jac[:1])])
    mu = linear_solve(jac_next_t, g, reverse=True)
    _, vjp = jax.vjp(lambda p, xx, mp: step_all(p, mp, xx, start, m_clamp)[0],
                     params, x, m_prev)
    d_params, d_x, d_prev = vjp(mu)
    return jnp.zeros_like(m_star), d_params, d_x, None, d_prev[0]


implicit_states.defvjp(_implicit_fwd, _implicit_bwd)


def parallel_mpn(params: Params, x: jax.Array, start: jax.Array, m0: jax.Array,
                 m_clamp: float | None, max_iters: int, tol: float):
    """DEER forward: returns (y [T, Nh], M_{T-1}, residual, iterations, converged).

    y and the final state are only meaningful where `converged` (residual <= tol); the caller
    falls back to the sequential scan otherwise. Differentiable (reverse mode) in params, x, m0.
    """
    m_star, r, k = newton_solve(params, x, start, m0, m_clamp, max_iters, tol)
    m = implicit_states(m_clamp, m_star, params, x, start, m0)
    _, y = step_all(params, shift(m, m0), x, start, m_clamp)
    return y, m[-1], r, k, r <= tol
