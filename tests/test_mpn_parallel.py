"""MPN scan="parallel" (Newton / DEER, memory/deer.py) against the sequential lax.scan.

The acceptance test is that outputs, final states and the gradients of a scalar loss with respect
to W, b, eta, lam, the inputs x and the initial state equal those of the sequential scan (= BPTT),
on tapes with episode starts anywhere, for small and large eta, with and without
input_bias / input_proj / m_clamp, in float32 and float64. Every equality test also asserts that
the parallel path really produced the result (no sequential fallback), so it cannot pass vacuously.
"""

import contextlib
import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from hypothesis import given, settings

from memory import QNetwork, make_memory
from memory.mpn import default_tol, parallel_stats

T, D, H = 24, 3, 8
HYP = settings(max_examples=5, deadline=None)
CONFIGS = {
    'plain': {},
    'proj_bias_clamp': dict(input_proj=4, input_bias=True, m_clamp=1.0),
}
# max |a - b| / max(1, max |b|) allowed between parallel and sequential results.
TOL = {'float32': 2e-4, 'float64': 1e-11}
# The parallel path's graph (unrolled associative-scan levels, a while loop, a cond, a custom
# VJP) takes seconds to compile on CPU; cheaper LLVM passes halve that and keep the suite fast.
jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0,
                                                   'xla_llvm_disable_expensive_passes': True})


@contextlib.contextmanager
def x64(enabled: bool):
    """float64 on demand (jax.experimental.enable_x64 is gone in recent jax; restore after)."""
    ctx = getattr(jax.experimental, 'enable_x64', None)
    if not enabled:
        yield
    elif ctx is not None:
        with ctx():
            yield
    else:
        old = jax.config.jax_enable_x64
        jax.config.update('jax_enable_x64', True)
        try:
            yield
        finally:
            jax.config.update('jax_enable_x64', old)


@functools.lru_cache(maxsize=None)
def variables_for(cfg: str, eta: float, dtype: str, lam: float = 0.9):
    """Initialised variables with eta / lam set, cast to dtype (call inside x64 for float64)."""
    module = make_memory('mpn', hidden=H, **CONFIGS[cfg])
    v = module.init(jax.random.PRNGKey(0), jnp.zeros((T, D)), jnp.zeros((T,), bool))
    v = {'params': dict(v['params'], eta=jnp.float32(eta), lam=jnp.float32(lam))}
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), v)


@functools.lru_cache(maxsize=None)
def value_and_grads(cfg: str, scan: str, dtype: str, newton_iters: int = T):
    """jit((variables, x, start, m0) -> (loss, (y, m_T, intermediates), grads wrt v, x, m0)).

    Cached per dtype too: the x64 flag is part of jit's cache key, but the Python cache is not.
    newton_iters = T guarantees convergence in exact arithmetic (each Newton step makes at least
    one more step of every episode exact), so the parallel path never needs its fallback here.
    """
    module = make_memory('mpn', hidden=H, scan=scan, newton_iters=newton_iters, **CONFIGS[cfg])
    rng = np.random.default_rng(123)
    wy = rng.normal(size=(T, H))
    wm = rng.normal(size=module.initial_state(D).shape)

    def loss(v, x, start, m0):
        (y, m), inter = module.apply(v, x, start, m0, mutable=['intermediates'])
        value = jnp.sum(jnp.sin(3.0 * y) * wy.astype(y.dtype)) + jnp.sum(m * wm.astype(m.dtype))
        return value, (y, m, inter.get('intermediates', {}))

    return jit(jax.value_and_grad(loss, argnums=(0, 1, 3), has_aux=True))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


def assert_trees_match(par, seq, tol):
    errs = jax.tree.map(rel_err, par, seq)
    worst = max(jax.tree.leaves(errs))
    assert worst <= tol, errs


def draw_tape(seed: int, flags, with_state: bool, nx: int, dtype: str):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(len(flags), D)), dtype)
    m0 = rng.normal(size=(H, nx)) * 0.5 if with_state else np.zeros((H, nx))
    return x, jnp.asarray(np.array(flags, bool)), jnp.asarray(m0, dtype)


def check_parallel_equals_sequential(cfg, eta, dtype, flags, seed, with_state,
                                     require_nonzero=False):
    with x64(dtype == 'float64'):
        v = variables_for(cfg, eta, dtype)
        nx = make_memory('mpn', hidden=H, **CONFIGS[cfg]).initial_state(D).shape[-1]
        x, start, m0 = draw_tape(seed, flags, with_state, nx, dtype)
        (l_s, (y_s, m_s, _)), g_s = value_and_grads(cfg, 'sequential', dtype)(v, x, start, m0)
        (l_p, (y_p, m_p, inter)), g_p = value_and_grads(cfg, 'parallel', dtype)(v, x, start, m0)
        assert y_p.dtype == jnp.dtype(dtype) and m_p.dtype == jnp.dtype(dtype)
        assert bool(inter['mpn_fallback'][0]) is False, inter  # the parallel path produced it
        assert float(inter['mpn_residual'][0]) <= default_tol(jnp.dtype(dtype))
        tol = TOL[dtype]
        assert_trees_match((y_p, m_p, l_p), (y_s, m_s, l_s), tol)
        v_grads_p, v_grads_s = g_p[0]['params'], g_s[0]['params']
        for name in ('W', 'b', 'eta', 'lam'):
            assert rel_err(v_grads_p[name], v_grads_s[name]) <= tol, name
            # (a drawn tape may legitimately give a zero gradient, e.g. for lam when every step
            # is a start or the clamp binds everywhere; the fixed tapes must not)
            assert not require_nonzero or np.abs(np.asarray(v_grads_s[name])).max() > 0.0, name
        assert_trees_match(g_p, g_s, tol)  # everything, incl. x, m0 and input_proj (zero)
        if 'input_proj' in v_grads_p:
            assert np.all(np.asarray(v_grads_p['input_proj']) == 0.0)
        return inter


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('eta', [0.1, 1.0, 3.0])
@pytest.mark.parametrize('cfg', list(CONFIGS))
@HYP
@given(flags=st.lists(st.booleans(), min_size=T, max_size=T), seed=st.integers(0, 2**31 - 1),
       with_state=st.booleans())
def test_parallel_equals_sequential(cfg, eta, dtype, flags, seed, with_state):
    check_parallel_equals_sequential(cfg, eta, dtype, flags, seed, with_state)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_parallel_equals_sequential_hard_cases(dtype):
    """Fixed flag patterns: one long episode from a carried state, a start at the last step,
    consecutive starts, and a clamp that is certainly active (eta = 3)."""
    patterns = [
        [False] * T,
        [True] + [False] * (T - 2) + [True],
        [True, True, False, True, True] + [False] * (T - 5),
    ]
    for i, flags in enumerate(patterns):
        check_parallel_equals_sequential('plain', 3.0, dtype, flags, i, True,
                                         require_nonzero=True)
        check_parallel_equals_sequential('proj_bias_clamp', 3.0, dtype, flags, i, True)
    with x64(dtype == 'float64'):  # the clamp binds, so the masked Jacobian is exercised
        v = variables_for('proj_bias_clamp', 3.0, dtype)
        module = make_memory('mpn', hidden=H, **CONFIGS['proj_bias_clamp'])
        _, m = module.apply(v, *draw_tape(0, patterns[0], False, 4, dtype)[:2])
        assert np.abs(np.asarray(m)).max() == pytest.approx(1.0)


def test_state_none_and_single_step():
    """The one-step acting path (T = 1), starting from state=None, then carrying the state."""
    v = variables_for('plain', 1.0, 'float32')
    seq_apply = jit(make_memory('mpn', hidden=H).apply)
    par_apply = jit(make_memory('mpn', hidden=H, scan='parallel').apply)
    x, start, _ = draw_tape(0, [False, False, True, False], False, D, 'float32')
    state_s = state_p = None
    for t in range(len(start)):
        y_s, state_s = seq_apply(v, x[t:t + 1], start[t:t + 1], state_s)
        y_p, state_p = par_apply(v, x[t:t + 1], start[t:t + 1], state_p)
        assert_trees_match((y_p, state_p), (y_s, state_s), TOL['float32'])
    assert np.abs(np.asarray(state_s)).max() > 0.0


@pytest.mark.parametrize('cfg', ['proj_bias_clamp'])
def test_fallback_when_newton_cannot_converge(cfg):
    """One Newton step cannot solve a long episode at eta = 3: the sequential scan takes over,
    the outputs and gradients are the sequential ones, and the sown flag says so."""
    v = variables_for(cfg, 3.0, 'float32')
    nx = make_memory('mpn', hidden=H, **CONFIGS[cfg]).initial_state(D).shape[-1]
    x, start, m0 = draw_tape(7, [True] + [False] * (T - 1), False, nx, 'float32')
    (l_s, (y_s, m_s, inter_s)), g_s = value_and_grads(cfg, 'sequential', 'float32')(
        v, x, start, m0)
    (l_p, (y_p, m_p, inter)), g_p = value_and_grads(cfg, 'parallel', 'float32', 1)(
        v, x, start, m0)
    assert inter_s == {}  # nothing is sown in sequential mode
    assert bool(inter['mpn_fallback'][0]) is True
    assert float(inter['mpn_residual'][0]) > default_tol(jnp.float32)
    assert int(inter['mpn_newton_iters'][0]) == 1
    np.testing.assert_array_equal(np.asarray(y_p), np.asarray(y_s))
    np.testing.assert_array_equal(np.asarray(m_p), np.asarray(m_s))
    assert_trees_match(g_p, g_s, 1e-6)


def test_vmap_and_qnetwork_fallback_count():
    """Under vmap (cond -> select) and inside a QNetwork, read the flags as documented: a tape
    that converges (flag False, early exit) next to one that cannot (flag True)."""
    memory = make_memory('mpn', hidden=H, scan='parallel', newton_iters=2)
    qnet = QNetwork(memory, num_actions=2, head=(5,))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, T, D)), jnp.float32)
    start = jnp.zeros((2, T), bool).at[:, 0].set(True)
    variables = jit(qnet.init)(jax.random.PRNGKey(0), x[0], start[0])
    params = dict(variables['params'])
    # tape 0 at eta = 0.1 converges in 2 steps; tape 1 at eta = 3 (other variables) cannot.
    batch = jax.tree.map(lambda a: jnp.stack([a, a]), {'params': params})
    batch['params']['memory'] = dict(batch['params']['memory'],
                                     eta=jnp.array([0.1, 3.0], jnp.float32))

    def loss(network, v, x, s):  # per tape: a scalar of the Q-values, and what was sown
        (q, _), inter = network.apply(v, x, s, mutable=['intermediates'])
        return jnp.sum(jnp.sin(q)), inter

    def batched(network):  # per-tape gradients under vmap, as in the segment loss
        return jit(jax.vmap(jax.value_and_grad(functools.partial(loss, network),
                                                   has_aux=True)))

    (value, inter), grads = batched(qnet)(batch, x, start)
    flags = [val for path, val in traverse_util.flatten_dict(inter['intermediates']).items()
             if path[-1] == 'mpn_fallback']
    assert len(flags) == 1
    np.testing.assert_array_equal(np.asarray(flags[0][0]), [False, True])
    stats = jax.jit(parallel_stats)(inter)  # the documented helper for training loops
    assert int(stats['calls']) == 2 and int(stats['fallbacks']) == 1
    assert float(stats['max_residual']) > default_tol(jnp.float32)
    assert int(stats['max_newton_iters']) == 2
    memory_inter = inter['intermediates']['memory']
    assert float(memory_inter['mpn_residual'][0][0]) <= default_tol(jnp.float32)
    assert float(memory_inter['mpn_residual'][0][1]) > default_tol(jnp.float32)
    assert int(memory_inter['mpn_newton_iters'][0][0]) <= 2
    seq = QNetwork(make_memory('mpn', hidden=H), num_actions=2, head=(5,))
    (value_seq, _), grads_seq = batched(seq)(batch, x, start)
    assert rel_err(value, value_seq) <= 1e-5
    assert_trees_match(grads, grads_seq, 1e-4)


def test_auto_mode_and_validation(monkeypatch):
    auto = make_memory('mpn', hidden=H, scan='auto')
    v = variables_for('plain', 1.0, 'float32')
    x, start, _ = draw_tape(0, [True] + [False] * (T - 1), False, D, 'float32')
    out, inter = auto.apply(v, x, start, mutable=['intermediates'])
    if jax.default_backend() == 'cpu':
        assert inter == {}  # sequential on CPU at every length
        assert int(parallel_stats(inter)['calls']) == 0
        assert not auto._use_parallel(10**6)
    assert_trees_match(out, make_memory('mpn', hidden=H).apply(v, x, start), 1e-5)
    monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
    assert auto._use_parallel(10**5) and not auto._use_parallel(16)
    with pytest.raises(ValueError, match='scan'):
        make_memory('mpn', hidden=H, scan='newton').apply(v, x, start)
