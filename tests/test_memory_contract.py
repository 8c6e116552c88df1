"""Every registered memory model satisfies the contract of memory/base.py (Memory).

Each test runs over the whole registry, so a new model (one module in memory/ and one registry
line) is checked here without a line of its own: it builds from its registry defaults, its
initial state has the shape of the state it returns, a start flag resets the state, `project` is
idempotent, `diagnostics` returns scalars, and the class attributes that the analysis code reads
(state_name, plastic, scan_modes, associative) say the truth.
"""
import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memory import MEMORY_NAMES, MEMORY_ORDER, MODELS, Memory, QNetwork, make_memory, model_class
from memory.mpn import parallel_stats

T, D = 10, 3
TOL = dict(rtol=1e-5, atol=1e-5)
NAMES = [spec.name for spec in MODELS]


@functools.lru_cache(maxsize=None)
def build(name: str, scan: str | None = None):
    """(module, variables, jitted apply) of a model from its registry defaults (and a scan mode)."""
    spec = MODELS[NAMES.index(name)]
    module = make_memory(name, **spec.defaults, **({} if scan is None else dict(scan=scan)))
    x, start = tape(0)
    variables = module.init(jax.random.PRNGKey(0), x, start)
    return module, variables, jax.jit(module.apply)


def tape(seed: int, starts=(0, 4)):
    """Observations x [T, D] ~ N(0, 1) and start flags [T] set at the given rows."""
    x = np.random.default_rng(seed).normal(size=(T, D)).astype(np.float32)
    start = np.zeros(T, bool)
    start[list(starts)] = True
    return jnp.asarray(x), jnp.asarray(start)


def assert_trees_close(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), **TOL), a, b)


def test_registry_lines():
    assert MEMORY_NAMES == tuple(sorted(NAMES)) and MEMORY_ORDER == tuple(NAMES)
    for spec in MODELS:
        cls = model_class(spec.name)
        assert issubclass(cls, Memory) and cls.__name__ == spec.class_name
        assert spec.description and '\n' not in spec.description
    with pytest.raises(ValueError, match="unknown memory model 'lstm'"):
        model_class('lstm')


def test_registry_feeds_config_and_imports_no_jax():
    code = ("import sys, config\n"
            "from memory import MODELS\n"
            "assert 'jax' not in sys.modules and 'flax' not in sys.modules\n"
            "assert config.MEMORY_DEFAULTS == {s.name: s.defaults for s in MODELS}\n"
            "assert all(s.name in config.SCHEMA['model']['memory'].doc for s in MODELS)\n")
    subprocess.run([sys.executable, '-c', code], check=True)


@pytest.mark.parametrize('name', NAMES)
def test_builds_and_state_shapes(name):
    module, variables, apply = build(name)
    x, start = tape(1)
    y, final = apply(variables, x, start)
    assert y.ndim == 2 and y.shape[0] == T
    init = module.initial_state(D)  # an unbound module
    assert jax.tree.map(jnp.shape, final) == jax.tree.map(jnp.shape, init)
    assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(init))  # the zero state
    # state=None is the initial state
    assert_trees_close(apply(variables, x, start, init), (y, final))


@pytest.mark.parametrize('name', NAMES)
def test_start_flag_resets_the_state(name):
    module, variables, apply = build(name)
    x, start = tape(2, starts=(0, 4))
    y, final = apply(variables, x, start)
    y_fresh, final_fresh = apply(variables, x[4:], start[4:])  # a fresh run from the flagged row
    np.testing.assert_allclose(np.asarray(y[4:]), np.asarray(y_fresh), **TOL)
    assert_trees_close(final, final_fresh)
    # whatever state comes in, a start flag on row 0 discards it
    _, carried = apply(variables, x[:4], start[:4])
    assert_trees_close(apply(variables, x[4:], start[4:], carried), (y_fresh, final_fresh))


@pytest.mark.parametrize('name', NAMES)
def test_project_is_idempotent(name):
    module, variables, _ = build(name)
    pushed = jax.tree.map(lambda a: a + 3.0, variables)  # out of any constraint's range
    once = module.project(pushed)
    assert jax.tree.structure(once) == jax.tree.structure(variables)
    assert_trees_close(module.project(once), once)


@pytest.mark.parametrize('name', NAMES)
def test_diagnostics_are_scalars(name):
    module, variables, _ = build(name)
    x, start = tape(3)
    (_, _), inter = jax.jit(lambda v: module.apply(v, x, start, mutable=['intermediates']))(variables)
    diag = module.diagnostics(inter)
    assert isinstance(diag, dict)
    assert all(jnp.shape(v) == () for v in diag.values())
    # through the Q-network the same, read from the memory's own scope
    net = QNetwork(module, num_actions=2, head=(4,))
    v = net.init(jax.random.PRNGKey(1), x, start)
    (_, _), inter = net.apply(v, x, start, mutable=['intermediates'])
    assert set(net.diagnostics(inter)) == set(diag)


@pytest.mark.parametrize('name', NAMES)
def test_declared_attributes(name):
    module, variables, apply = build(name)
    cls = type(module)
    x, start = tape(4)
    y, final = apply(variables, x, start)
    if cls.state_name is None:  # the state is the output itself
        assert_trees_close(final, y[-1])
    else:
        assert isinstance(cls.state_name, str) and cls.state_name
    params = variables['params']
    assert cls.plastic == ('eta' in params and 'lam' in params)
    if cls.plastic:
        assert jnp.shape(params['eta']) == () and jnp.shape(params['lam']) == ()
    for mode in cls.scan_modes:  # every declared mode computes the same function
        _, _, other_apply = build(name, scan=mode)
        assert_trees_close(other_apply(variables, x, start), (y, final))


def test_mpn_diagnostics_count_fallbacks():
    """The MPN's hook reports parallel_stats' fallbacks under the metric name scan_fallbacks."""
    memory = make_memory('mpn', hidden=4, eta_init=3.0, scan='parallel', newton_iters=1)
    net = QNetwork(memory, num_actions=2, head=())
    x, start = tape(5, starts=(0,))
    v = net.init(jax.random.PRNGKey(0), x, start)
    (_, _), inter = net.apply(v, x, start, mutable=['intermediates'])
    diag = net.diagnostics(inter)
    assert set(diag) == {'scan_fallbacks'}
    assert diag['scan_fallbacks'].dtype == jnp.int32
    assert int(diag['scan_fallbacks']) == int(parallel_stats(inter)['fallbacks']) == 1
