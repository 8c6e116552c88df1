"""Tests for memory/: reset semantics on tapes, acting path, exact references, constraints.

Every scan/parallel path is compared against an independent sequential reference (per-episode
runs, one-step acting, or a NumPy loop of the docs/mpn.md equations), never against itself.
"""

import functools
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from memory import MEMORY_NAMES, QNetwork, make_memory
from memory.scan import reset_linear_scan, reset_scan

T, D, H = 12, 4, 6
TOL = dict(rtol=1e-5, atol=1e-5)
HYP = settings(max_examples=20, deadline=None)

# id -> (registry name, keywords, eta to set in the params so the memory matters; None: keep)
CONFIGS = {
    'mpn': ('mpn', {}, 0.7),
    'mpn_pre': ('mpn_pre', {}, 0.7),
    'gru': ('gru', {}, None),
    'mpn_proj_bias_clamp': ('mpn', dict(input_proj=3, input_bias=True, m_clamp=1.0), 2.0),
    'mpn_pre_bias': ('mpn_pre', dict(input_bias=True), 0.7),
}
MPN_LIKE = ['mpn', 'mpn_pre', 'mpn_proj_bias_clamp', 'mpn_pre_bias']
starts = st.lists(st.booleans(), min_size=T, max_size=T)
seeds = st.integers(0, 2**31 - 1)


@functools.lru_cache(maxsize=None)
def setup(cfg: str):
    """(module, variables, jitted apply) for a config; params perturbed to make memory matter."""
    name, kwargs, eta = CONFIGS[cfg]
    module = make_memory(name, hidden=H, **kwargs)
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((T, D)), jnp.zeros((T,), bool))
    if eta is not None:
        params = dict(variables['params'], eta=jnp.float32(eta), lam=jnp.float32(0.9))
        variables = {'params': params}
    return module, variables, jax.jit(module.apply)


def tape(seed: int, flags):
    """Random observations [T, D] and start flags [T] as float32 / bool arrays."""
    x = np.random.default_rng(seed).normal(size=(len(flags), D)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(np.array(flags, bool))


def assert_trees_close(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), **TOL), a, b)


# 1. One pass over a tape equals running each episode on its own from the initial state.
@pytest.mark.parametrize('cfg', list(CONFIGS))
@HYP
@given(flags=starts, seed=seeds)
def test_tape_equals_separate_episodes(cfg, flags, seed):
    module, variables, apply = setup(cfg)
    x, start = tape(seed, flags)
    y, final = apply(variables, x, start)
    cuts = [0] + [t for t in range(1, T) if flags[t]] + [T]
    ys = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        y_ep, final_ep = apply(variables, x[lo:hi], start[lo:hi])  # state=None: initial state
        ys.append(y_ep)
    np.testing.assert_allclose(np.asarray(y), np.concatenate(ys), **TOL)
    assert_trees_close(final, final_ep)
    assert y.shape == (T, H)
    assert jax.tree.map(jnp.shape, final) == jax.tree.map(jnp.shape, module.initial_state(D))


# 2. Exact zero gradient across episode boundaries (and from the future); non-zero inside.
@functools.lru_cache(maxsize=None)
def jacobian_fn(cfg):
    _, variables, apply = setup(cfg)
    return jax.jit(lambda x, start: jax.jacrev(lambda x_: apply(variables, x_, start)[0])(x))


@pytest.mark.parametrize('cfg', list(CONFIGS))
@HYP
@given(flags=starts, seed=seeds)
def test_no_gradient_across_episodes(cfg, flags, seed):
    x, start = tape(seed, flags)
    jac = np.abs(np.asarray(jacobian_fn(cfg)(x, start))).sum(axis=(1, 3))  # [t, s]
    episode = np.cumsum(flags)
    t_idx, s_idx = np.meshgrid(np.arange(T), np.arange(T), indexing='ij')
    earlier_episode = episode[s_idx] < episode[t_idx]
    assert np.all(jac[earlier_episode] == 0.0)
    assert np.all(jac[s_idx > t_idx] == 0.0)
    assert np.all(np.diag(jac) > 0.0)
    same_episode_past = (episode[s_idx] == episode[t_idx]) & (s_idx < t_idx)
    if same_episode_past.any():
        assert jac[same_episode_past].max() > 0.0


# 3. Acting one step at a time while carrying the state equals one pass over the tape.
@pytest.mark.parametrize('cfg', list(CONFIGS))
@HYP
@given(flags=starts, seed=seeds, split=st.integers(1, T - 1))
def test_stepping_equals_tape(cfg, flags, seed, split):
    _, variables, apply = setup(cfg)
    x, start = tape(seed, flags)
    y, final = apply(variables, x, start)
    state, ys = None, []
    for t in range(T):
        y_t, state = apply(variables, x[t:t + 1], start[t:t + 1], state)
        ys.append(y_t)
    np.testing.assert_allclose(np.asarray(y), np.concatenate(ys), **TOL)
    assert_trees_close(final, state)
    # Two chunks with a carried (non-zero) state in between: the multi-step acting path.
    y_a, state = apply(variables, x[:split], start[:split])
    y_b, state = apply(variables, x[split:], start[split:], state)
    np.testing.assert_allclose(np.asarray(y), np.concatenate([y_a, y_b]), **TOL)
    assert_trees_close(final, state)


# 4. Against independent NumPy loops of the docs/mpn.md equations.
def layer_inputs_np(params, x, input_bias):
    u = np.asarray(x, np.float64)
    if input_bias:  # the constant joins the observation before the (then affine) projection
        u = np.concatenate([u, np.ones((len(u), 1))], axis=1)
    if 'input_proj' in params:
        u = u @ np.asarray(params['input_proj'], np.float64).T
    return u


def mpn_numpy(params, x, flags, input_bias=False, m_clamp=None):
    """Exact MPN step by step: reset, modulated drive, tanh, Hebbian update, optional clamp."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    u = layer_inputs_np(p, x, input_bias)
    m = np.zeros((p['W'].shape[0], u.shape[1]))
    ys = []
    for t in range(len(u)):
        if flags[t]:
            m = np.zeros_like(m)
        h = np.tanh(p['b'] + (p['W'] * (1 + m)) @ u[t])
        m = p['lam'] * m + p['eta'] * np.outer(h, u[t])
        if m_clamp is not None:
            m = np.clip(m, -m_clamp, m_clamp)
        ys.append(h)
    return np.stack(ys), m


def mpn_pre_numpy(params, x, flags, input_bias=False, m0=None):
    """MPNpre step by step: h reads m_{t-1}; m_t = lam m_{t-1} + eta/sqrt(Nh) x_t."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    u = layer_inputs_np(p, x, input_bias)
    nh = p['W'].shape[0]
    m = np.zeros(u.shape[1]) if m0 is None else np.asarray(m0, np.float64)
    ys = []
    for t in range(len(u)):
        if flags[t]:
            m = np.zeros_like(m)
        ys.append(np.tanh(p['b'] + p['W'] @ ((1 + m) * u[t])))
        m = p['lam'] * m + p['eta'] / math.sqrt(nh) * u[t]
    return np.stack(ys), m


@pytest.mark.parametrize('cfg', ['mpn', 'mpn_proj_bias_clamp'])
@HYP
@given(flags=starts, seed=seeds)
def test_mpn_matches_numpy_loop(cfg, flags, seed):
    _, kwargs, _ = CONFIGS[cfg]
    _, variables, apply = setup(cfg)
    x, start = tape(seed, flags)
    y, m = apply(variables, x, start)
    bias, clamp = kwargs.get('input_bias', False), kwargs.get('m_clamp')
    y_ref, m_ref = mpn_numpy(variables['params'], x, flags, bias, clamp)
    np.testing.assert_allclose(np.asarray(y), y_ref, **TOL)
    np.testing.assert_allclose(np.asarray(m), m_ref, **TOL)


def test_mpn_clamp_is_active():
    """The clamp config must actually clamp, else test 4 would not check the clamp."""
    _, variables, apply = setup('mpn_proj_bias_clamp')
    flags = [True] + [False] * (T - 1)
    x, start = tape(1, flags)
    y, m = apply(variables, x, start)
    y_free, _ = mpn_numpy(variables['params'], x, flags, input_bias=True, m_clamp=None)
    assert np.abs(np.asarray(m)).max() == pytest.approx(1.0)
    assert np.abs(np.asarray(y) - y_free).max() > 1e-3


@pytest.mark.parametrize('cfg', ['mpn_pre', 'mpn_pre_bias'])
@HYP
@given(flags=starts, seed=seeds)
def test_mpn_pre_matches_numpy_loop(cfg, flags, seed):
    _, kwargs, _ = CONFIGS[cfg]
    module, variables, apply = setup(cfg)
    x, start = tape(seed, flags)
    bias = kwargs.get('input_bias', False)
    y, m = apply(variables, x, start)
    y_ref, m_ref = mpn_pre_numpy(variables['params'], x, flags, bias)
    np.testing.assert_allclose(np.asarray(y), y_ref, **TOL)
    np.testing.assert_allclose(np.asarray(m), m_ref, **TOL)
    # From a non-zero carried state.
    m0 = np.random.default_rng(seed + 1).normal(size=module.initial_state(D).shape)
    y, m = apply(variables, x, start, jnp.asarray(m0, jnp.float32))
    y_ref, m_ref = mpn_pre_numpy(variables['params'], x, flags, bias, m0)
    np.testing.assert_allclose(np.asarray(y), y_ref, **TOL)
    np.testing.assert_allclose(np.asarray(m), m_ref, **TOL)


@HYP
@given(flags=starts, seed=seeds, with_initial=st.booleans())
def test_reset_linear_scan_matches_loop(flags, seed, with_initial):
    """Per-step decays (not only a constant λ) exercise the a-part of the monoid."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, size=T).astype(np.float32)
    u = rng.normal(size=(T, 3)).astype(np.float32)
    m0 = rng.normal(size=3).astype(np.float32) if with_initial else None
    out = reset_linear_scan(jnp.asarray(a), jnp.asarray(u), jnp.asarray(flags), m0)
    m = np.zeros(3) if m0 is None else m0.astype(np.float64)
    for t in range(T):
        m = u[t] + (0.0 if flags[t] else a[t] * m)
        np.testing.assert_allclose(np.asarray(out[t]), m, **TOL)


def test_reset_scan_is_generic():
    """Another monoid (running max) through the same resettable scan."""
    x = jnp.array([3., 1., 5., 2., 0., 4., 1.])
    start = jnp.array([0, 0, 0, 1, 0, 0, 1], bool)
    out = reset_scan(jnp.maximum, x, start)
    np.testing.assert_array_equal(np.asarray(out), [3., 3., 5., 2., 2., 4., 1.])
    out = reset_scan(jnp.maximum, x, start, initial=jnp.array([9.]))
    np.testing.assert_array_equal(np.asarray(out), [9., 9., 9., 2., 2., 4., 1.])


# 5. Projection of λ into [0, lam_max].
@pytest.mark.parametrize('name', ['mpn', 'mpn_pre'])
def test_project_clips_lambda(name):
    module = make_memory(name, hidden=H, lam_max=0.8)
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((T, D)), jnp.zeros((T,), bool))
    assert float(variables['params']['lam']) == pytest.approx(0.8)  # lam_init None -> lam_max
    for lam, expected in [(2.0, 0.8), (-1.0, 0.0), (0.5, 0.5)]:
        v = {'params': dict(variables['params'], lam=jnp.float32(lam))}
        out = jax.jit(module.project)(v)
        assert float(out['params']['lam']) == pytest.approx(expected)
        for k in v['params']:
            if k != 'lam':
                np.testing.assert_array_equal(out['params'][k], v['params'][k])


def test_gru_project_is_identity():
    module = make_memory('gru', hidden=H)
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((T, D)), jnp.zeros((T,), bool))
    out = module.project(variables)
    jax.tree.map(np.testing.assert_array_equal, out, variables)


def test_qnetwork_project_and_shapes():
    qnet = QNetwork(make_memory('mpn_pre', hidden=H, lam_max=0.9), num_actions=3, head=(8, 5))
    x, start = tape(0, [True] + [False] * (T - 1))
    variables = qnet.init(jax.random.PRNGKey(0), x, start)
    assert set(variables['params']) == {'memory', 'head_0', 'head_1', 'head_out'}
    q, state = qnet.apply(variables, x, start)
    assert q.shape == (T, 3)
    assert state.shape == qnet.initial_state(D).shape == (D,)
    memory_params = dict(variables['params']['memory'], lam=jnp.float32(2.0))
    v = {'params': dict(variables['params'], memory=memory_params)}
    out = qnet.project(v)
    assert float(out['params']['memory']['lam']) == pytest.approx(0.9)
    np.testing.assert_array_equal(out['params']['memory']['W'], memory_params['W'])
    jax.tree.map(np.testing.assert_array_equal, out['params']['head_0'], v['params']['head_0'])
    assert float(v['params']['memory']['lam']) == 2.0  # the input is not mutated


# 6. Registry errors.
def test_make_memory_rejects_unknown_name():
    assert MEMORY_NAMES == ('gru', 'mpn', 'mpn_pre')
    with pytest.raises(ValueError) as err:
        make_memory('lstm')
    assert str(err.value) == "unknown memory model 'lstm'; known: gru, mpn, mpn_pre"


@pytest.mark.parametrize('name, bad',
                         [('mpn', 'hiden'), ('mpn_pre', 'm_clamp'), ('gru', 'eta_init')])
def test_make_memory_rejects_unknown_keyword(name, bad):
    with pytest.raises(ValueError) as err:
        make_memory(name, hidden=4, **{bad: 1})
    assert bad in str(err.value) and 'hidden' in str(err.value)


def test_eta_init_none_draws_uniform():
    module = make_memory('mpn', hidden=H, eta_init=None)
    etas = [float(module.init(jax.random.PRNGKey(k), jnp.zeros((2, D)),
                              jnp.zeros((2,), bool))['params']['eta']) for k in range(8)]
    assert all(abs(e) <= math.sqrt(6) for e in etas) and len(set(etas)) > 1


# 7. The fixed projection never learns.
@pytest.mark.parametrize('name', ['mpn', 'mpn_pre'])
def test_input_proj_gets_zero_gradient(name):
    module = make_memory(name, hidden=H, input_proj=3, input_bias=True)
    x, start = tape(0, [True] + [False] * 5 + [True] + [False] * (T - 7))
    variables = module.init(jax.random.PRNGKey(0), x, start)
    loss = lambda v: jnp.sum(module.apply(v, x, start)[0] ** 2)
    grads = jax.jit(jax.grad(loss))(variables)['params']
    assert np.all(np.asarray(grads['input_proj']) == 0.0)
    assert np.abs(np.asarray(grads['W'])).max() > 0.0
