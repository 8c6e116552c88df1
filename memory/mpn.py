"""The exact Multi-Plasticity Network (Aitken & Mihalas 2023), as a sequential scan or in
parallel over the tape by Newton (DEER) iterations.

See docs/mpn.md. The post-synaptic term of the Hebbian update is h_t, which depends
on M_{t-1} through tanh, so the recurrence is not a monoid; a plain `jax.lax.scan` is exact
(scan="sequential", the default). scan="parallel" solves the same recurrence with Newton steps
that are linear associative scans (memory/deer.py), with a checked residual and a sequential
fallback; scan="auto" picks per backend and tape length. Measured times of both paths are in
docs/mpn.md ("Measured").
"""

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from memory.base import Memory
from memory.deer import mpn_step, parallel_mpn
from memory.lean import lean_mpn
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


# `scan="auto"`: the shortest tape for which the parallel (Newton/DEER) path is chosen, per
# jax.default_backend(); None: never. CPU: measured (docs/mpn.md, "Measured") - the sequential
# scan wins at every length, so never. GPU: 2048 is an ESTIMATE, NOT A MEASUREMENT (no GPU was
# available when this was written): a sequential scan step on a GPU costs a few kernel launches
# plus a while-loop predicate sync (~10-30 us), i.e. ~0.1-0.3 s per pass at T = 1e4, while a
# Newton step is ~2 log2(T) levels of small batched kernels (launch-bound, ~1 ms) and 2-4 of
# them usually suffice, so the crossover is expected at T of a few hundred to a few thousand.
# TPU: no estimate (sequential). Re-measure with `python -m benchmarks.scan` on the target
# machine and update these numbers.
AUTO_PARALLEL_MIN_LENGTH = {'cpu': None, 'gpu': 2048, 'cuda': 2048, 'rocm': 2048, 'tpu': None}
SCAN_MODES = ('sequential', 'parallel', 'auto')


def default_tol(dtype) -> float:
    """Residual tolerance for the parallel path when MPN.tol is None: 1e-4 in float32 (and
    narrower types), 1e-10 in float64. The residual is relative to max(1, max|F(M)|)."""
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-4


def parallel_stats(intermediates) -> dict:
    """Summary of what MPN(scan="parallel") sowed, from apply(..., mutable=['intermediates']).

    Takes the returned mutable dict (or its 'intermediates' entry) at any nesting depth and with
    any vmap batch axes. Returns jnp scalars: calls (Newton solves run), fallbacks (how many of
    them fell back to the sequential scan), max_residual and max_newton_iters (0 when nothing
    was sown, e.g. scan="sequential"). Jittable.
    """
    tree = intermediates.get('intermediates', intermediates)
    leaves = {'mpn_fallback': [], 'mpn_residual': [], 'mpn_newton_iters': []}
    for path, value in traverse_util.flatten_dict(dict(tree)).items():
        if path[-1] in leaves:
            leaves[path[-1]].extend(jnp.ravel(v) for v in value)
    cat = {k: jnp.concatenate(v) if v else jnp.zeros((0,)) for k, v in leaves.items()}
    return dict(calls=jnp.int32(cat['mpn_fallback'].size),
                fallbacks=jnp.sum(cat['mpn_fallback'].astype(jnp.int32)),
                max_residual=jnp.max(cat['mpn_residual'], initial=0.0),
                max_newton_iters=jnp.max(cat['mpn_newton_iters'], initial=0).astype(jnp.int32))


def plain_sequential(params, x: jax.Array, start: jax.Array, m0: jax.Array, m_clamp: float | None):
    """The exact MPN as a plain `lax.scan` of `mpn_step`, differentiated by JAX: the reference the
    lean scan is tested against, and the path taken with m_clamp. Returns (y [T, Nh], M_T)."""
    def step(m, inputs):
        return mpn_step(params, m, *inputs, m_clamp)
    m_final, y = jax.lax.scan(step, m0, (x, start))
    return y, m_final


class MPN(Memory):
    """Exact MPN layer: y, M_T = MPN(...).apply(variables, x [T, D], start [T], state=None).

    Per step: M = where(start, 0, M); h = tanh(b + (W ⊙ (1 + M)) x); M = λM + η h xᵀ
    (then clip to [-m_clamp, m_clamp] if set); y = h. State M: [hidden, Nx].

    Computation runs in the dtype of the inputs and params (float32 by default; float64 if both
    are float64, with jax_enable_x64 on).

    `scan` picks how the recurrence is evaluated; every mode computes the same function:
      - "sequential" (default): `jax.lax.scan`, O(T) depth; exact. Without m_clamp it is the
        lean scan of memory/lean.py (hand-written backward pass, so reverse mode only: grad, vjp,
        jacrev); with m_clamp, or `lean=False`, the plain autodiff scan of `mpn_step`
        (`plain_sequential`, every transform).
      - "parallel": Newton / DEER (memory/deer.py). Up to `newton_iters` Newton steps, each an
        associative scan over per-row dense Nx × Nx Jacobian blocks, under stop_gradient; then
        the converged tape gets the implicit-function-theorem gradient (a reverse associative
        scan of the transposed Jacobians), which equals BPTT. Reverse-mode only (grad / vjp /
        jacrev; not jvp / jacfwd). If the relative residual
        r = max_t |M_t - F(M_{t-1}, x_t)| / max(1, max|F|) exceeds `tol` (None: 1e-4 in float32,
        1e-10 in float64) after `newton_iters` steps (or is not finite), the result comes from
        the sequential scan instead (`jax.lax.cond`, so it stays jittable; the output is then
        exactly the sequential one). Under `jax.vmap` the cond becomes a select and BOTH paths
        run, so use "parallel" on unbatched tapes (e.g. the tape loss), not inside vmap.
        Newton steps stop early once r <= tol (after one extra polishing step unless
        r <= tol / 100), so a generous `newton_iters` costs nothing when it converges. Each
        step makes at least one more step of every episode exact, so newton_iters >= the
        longest episode always converges (up to rounding); how many steps are used in practice
        (more for larger |eta| or a binding m_clamp) is in docs/mpn.md ("Measured"). Memory:
        ~5 copies of the dense Jacobian blocks, ~20 T Nh Nx² bytes in float32.
      - "auto": "parallel" when T >= AUTO_PARALLEL_MIN_LENGTH[jax.default_backend()], else
        "sequential" (decided at trace time from the static tape length): always sequential on
        CPU, where the parallel path never overtakes (it does O(Nx²) more work per step, and a
        CPU gains nothing from O(log T) depth; docs/mpn.md, "Measured"); on GPU parallel from
        T = 2048 (an estimate, NOT measured: no GPU was available).

    Observability of the parallel path (nothing is sown in sequential mode, nor by "auto" when
    it picks sequential): each call sows into the 'intermediates' collection
        'mpn_fallback'     bool []   True when the sequential fallback produced the output
        'mpn_residual'     float []  the relative residual r after the Newton steps
        'mpn_newton_iters' int32 []  the Newton steps used (early exit once r <= tol)
    (each a tuple with one entry per call; under vmap each entry has the batch axis). Sowing is
    a no-op unless 'intermediates' is mutable. The training loss logs the fallback count through
    the contract's hook (`diagnostics`: {'scan_fallbacks'}, via QNetwork.diagnostics); the full
    summary is `parallel_stats`:
        (q, state), inter = net.apply(variables, x, start, mutable=['intermediates'])
        stats = parallel_stats(inter)  # {'calls', 'fallbacks', 'max_residual', 'max_newton_iters'}
    (jittable; works at any nesting, e.g. inside a QNetwork the keys sit under
    inter['intermediates']['memory']). A persistent fallback means each call costs the Newton
    steps AND the sequential scan, so raise newton_iters or use scan="sequential".
    """
    state_name: ClassVar[str | None] = 'M'
    plastic: ClassVar[bool] = True
    scan_modes: ClassVar[tuple[str, ...]] = ('sequential', 'parallel')  # 'auto' picks one of them

    hidden: int = 100
    eta_init: float | None = 0.1  # None: U(-sqrt6, sqrt6) as the authors
    lam_max: float = 0.95
    lam_init: float | None = None  # None: lam_max
    m_clamp: float | None = None
    input_proj: int = 0
    input_bias: bool = False
    scan: str = 'sequential'  # 'sequential' | 'parallel' | 'auto'
    newton_iters: int = 8  # parallel: maximum Newton steps before falling back
    lean: bool = True  # sequential: the lean scan (memory/lean.py); False: autodiff of mpn_step
    tol: float | None = None  # parallel: residual tolerance; None: default_tol(dtype)

    @nn.compact
    def __call__(self, x: jax.Array, start: jax.Array, state: jax.Array | None = None):
        """Run the tape x [T, D] with start flags [T]; returns y [T, hidden] and the final M."""
        if self.scan not in SCAN_MODES:
            raise ValueError(f"MPN.scan must be one of {SCAN_MODES}, got {self.scan!r}")
        x = jnp.asarray(x)
        if not (jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits >= 32):
            x = x.astype(jnp.float32)
        x = layer_inputs(self, x, self.input_proj, self.input_bias)
        params = plastic_params(self, x.shape[-1])
        dtype = jnp.result_type(x, *params)
        x = x.astype(dtype)
        start = jnp.asarray(start, bool)
        m0 = (jnp.zeros((self.hidden, x.shape[-1]), dtype) if state is None
              else jnp.asarray(state, dtype))

        def sequential(params, x, start, m0):
            if self.lean and self.m_clamp is None:
                return lean_mpn(params, x, start, m0)
            return plain_sequential(params, x, start, m0, self.m_clamp)

        if self._use_parallel(x.shape[0]):
            tol = default_tol(dtype) if self.tol is None else self.tol
            y_par, m_par, resid, iters, ok = parallel_mpn(
                params, x, start, m0, self.m_clamp, self.newton_iters, tol)
            self.sow('intermediates', 'mpn_fallback', ~ok)
            self.sow('intermediates', 'mpn_residual', resid)
            self.sow('intermediates', 'mpn_newton_iters', iters)
            return jax.lax.cond(ok, lambda *_: (y_par, m_par), sequential,
                                params, x, start, m0)
        return sequential(params, x, start, m0)

    @nn.nowrap
    def _use_parallel(self, length: int) -> bool:
        """Whether this call takes the Newton/DEER path (static: mode, backend, tape length)."""
        if self.scan == 'auto':
            threshold = AUTO_PARALLEL_MIN_LENGTH.get(jax.default_backend())
            return threshold is not None and length >= threshold
        return self.scan == 'parallel'

    @nn.nowrap
    def initial_state(self, input_dim: int) -> jax.Array:
        """Zero modulation matrix M [hidden, Nx] for observations of size input_dim."""
        nx = layer_input_dim(input_dim, self.input_proj, self.input_bias)
        return jnp.zeros((self.hidden, nx), jnp.float32)

    @nn.nowrap
    def project(self, variables: dict) -> dict:
        """Apply the parameter constraint (λ into [0, lam_max]) to `module.init` output."""
        return project_lam(variables, self.lam_max)

    @nn.nowrap
    def diagnostics(self, intermediates) -> dict[str, jax.Array]:
        """{'scan_fallbacks': int32 []}: how many parallel solves fell back to the sequential
        scan (`parallel_stats`' fallbacks; 0 when nothing was sown, e.g. scan="sequential")."""
        return {'scan_fallbacks': parallel_stats(intermediates)['fallbacks']}
