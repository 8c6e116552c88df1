"""Fast tapes: packed lanes (buffer.make_tape_buffer(lanes=K), losses.tape_loss over [K, N/K])
and the lean MPN scan (memory/lean.py).

Lanes are checked against the one-lane tape of the same episodes (the loss and its gradient must
be the same numbers), and the lean scan against the plain autodiff scan of `mpn_step` and against
finite differences; never a path against itself.
"""
from __future__ import annotations

import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

from buffer import Episodes, make_tape_buffer
from losses import LossConfig, tape_loss
from memory import QNetwork, make_memory
from memory.lean import lean_mpn
from memory.mpn import plain_sequential

HYP = settings(max_examples=12, deadline=None)
D, A = 3, 3  # obs dim, actions
TAPE = 80  # tape rows; lanes 1, 2, 4 -> 80, 40, 20 rows per lane
MAX_ROWS = 9  # longest episode (rows): with lanes of >= 20 rows first-fit packs every episode below
NET = QNetwork(make_memory('mpn', hidden=8, input_proj=4, input_bias=True, eta_init=0.7), A, head=(8,))
CFG = LossConfig(gamma=0.9, huber_delta=1.0)


def episodes(lengths, seed):
    """Episodes of the given row counts (transitions + final row) with random contents, memory
    resets at row 0 and at random rows, the last one terminated."""
    rng = np.random.default_rng(seed)
    e, r = max(6, len(lengths)), MAX_ROWS  # padded to 6 episodes (n_rows 0), one shape to compile
    n_rows = np.zeros(e, np.int32)
    n_rows[:len(lengths)] = lengths
    live = np.arange(r)[None, :] < n_rows[:, None]
    reset = (rng.random((e, r)) < 0.2) & live
    reset[:, 0] = True
    return Episodes(
        obs=jnp.asarray(np.where(live[..., None], rng.normal(size=(e, r, D)), 0), jnp.float32),
        action=jnp.asarray(rng.integers(0, A, (e, r)), jnp.int32),
        reward=jnp.asarray(rng.normal(size=(e, r)), jnp.float32),
        reset=jnp.asarray(reset),
        n_rows=jnp.asarray(n_rows),
        terminated=jnp.asarray(np.arange(e) == len(lengths) - 1),
    )


@functools.lru_cache(maxsize=None)
def params():
    init = jax.jit(NET.init)
    return tuple(init(jax.random.PRNGKey(k), jnp.zeros((2, D)), jnp.ones((2,), bool)) for k in (0, 1))


def ring(capacity, lanes=1):
    """A tape buffer of TAPE rows in `lanes` lanes over a ring of `capacity` rows."""
    return make_tape_buffer(capacity, D, TAPE, lanes=lanes)


add = jax.jit(ring(64).add)


@functools.partial(jax.jit, static_argnums=2)
def sample(state, key, lanes):
    return ring(state.obs.shape[0], lanes).sample(state, key)


@jax.jit
def _loss_and_grad(online, target, tape):
    return jax.value_and_grad(lambda p: tape_loss(p, target, NET, tape, CFG)[0])(online)


def loss_and_grad(tape):
    return _loss_and_grad(*params(), tape)


@jax.jit
def _loss_3_step(online, target, tape):
    return tape_loss(online, target, NET, tape, CFG.replace(n_step=3))[0]


def episode_ids(tape) -> list:
    """The episodes on a tape, each as the obs of its first row, sorted. A first row is a valid row
    at a lane's start or after an invalid row or after an episode's final row (valid, no transition)."""
    obs = np.asarray(tape.obs).reshape(-1, D)
    valid = np.asarray(tape.valid).reshape(-1, tape.valid.shape[-1])
    final = valid & ~np.asarray(tape.mask).reshape(valid.shape)
    first = valid.copy()
    first[:, 1:] &= ~valid[:, :-1] | final[:, :-1]
    return sorted(map(tuple, np.round(obs[first.reshape(-1)], 6)))


lengths = st.lists(st.integers(2, MAX_ROWS), min_size=1, max_size=6)


@HYP
@given(lengths=lengths, seed=st.integers(0, 2**31 - 1))
def test_lanes_hold_whole_episodes_and_give_the_one_lane_loss(lengths, seed):
    # Episodes of one add call only ever differ in obs, so a one-episode-per-row check suffices:
    # every obs row is distinct (normal draws), and each episode's rows stay together in a lane.
    state = add(ring(64).init(), episodes(lengths, seed))
    key = jax.random.PRNGKey(seed % 1000)
    one = sample(state, key, 1)
    (want, want_g) = loss_and_grad(one)
    want_3 = float(_loss_3_step(*params(), one))
    assert int(one.valid.sum()) == sum(lengths)  # room for all: the one-lane tape has them all
    for lanes in (2, 4):
        tape = sample(state, key, lanes)
        assert tape.obs.shape == (lanes, TAPE // lanes, D)
        valid = np.asarray(tape.valid)
        # padding only at each lane's end, and every lane starts with a memory reset
        assert np.all(np.diff(valid.astype(int), axis=1) <= 0)
        assert np.all(np.asarray(tape.reset)[:, 0])
        assert episode_ids(tape) == episode_ids(one)
        assert int(tape.mask.sum()) == int(one.mask.sum())
        loss, grads = loss_and_grad(tape)
        np.testing.assert_allclose(float(loss), float(want), rtol=2e-5, atol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), grads, want_g)
        # n-step returns never reach past an episode's final row, so lanes change nothing there either
        np.testing.assert_allclose(float(_loss_3_step(*params(), tape)), want_3, rtol=2e-5, atol=1e-6)
        # laid end to end, the lanes are a valid one-lane tape with the same loss
        flat = jax.tree.map(lambda x: x.reshape((TAPE,) + x.shape[2:]), tape)
        np.testing.assert_allclose(float(loss_and_grad(flat)[0]), float(want), rtol=2e-5, atol=1e-6)


def test_lanes_skip_what_does_not_fit_and_keep_episodes_whole():
    """More episodes than room: every packed episode is whole (its rows consecutive in one lane
    with the buffer's own order) and lanes fill first-fit."""
    big = ring(128)
    state = big.add(big.init(), episodes([MAX_ROWS] * 6, 3))
    state = big.add(state, episodes([MAX_ROWS] * 6, 4))
    tape = sample(state, jax.random.PRNGKey(0), 4)  # lanes of 20 rows: 2 episodes of 9 each
    valid = np.asarray(tape.valid)
    assert valid.sum(axis=1).tolist() == [18, 18, 18, 18]
    reset = np.asarray(tape.reset)
    assert np.all(reset[:, [0, 9, 18, 19]])  # episode starts and the padding rows
    mask = np.asarray(tape.mask)
    assert np.all(~mask[:, [8, 17]])  # each episode's final row is no transition


def test_lanes_must_divide_the_tape():
    for lanes in (0, 3):
        with pytest.raises(ValueError, match='lanes'):
            ring(64, lanes)  # refused when the buffer is made, before any sample


# ---- the lean MPN scan ---------------------------------------------------------------------------
T, NX, NH = 12, 4, 6


def mpn_problem(seed, flags, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    p = (jnp.asarray(rng.normal(size=(NH, NX)) * 0.5, dtype), jnp.asarray(rng.normal(size=NH) * 0.3, dtype),
         jnp.asarray(rng.uniform(-1.5, 1.5), dtype), jnp.asarray(rng.uniform(0.3, 0.95), dtype))
    x = jnp.asarray(rng.normal(size=(T, NX)), dtype)
    m0 = jnp.asarray(rng.normal(size=(NH, NX)) * 0.3, dtype)
    return p, x, jnp.asarray(flags, bool), m0


def objective(run):
    """A scalar of both outputs with random-looking weights, so every cotangent is non-trivial."""
    def f(p, x, m0, start):
        y, m = run(p, x, start, m0)
        wy = jnp.sin(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        wm = jnp.cos(jnp.arange(m.size, dtype=m.dtype)).reshape(m.shape)
        return jnp.sum(wy * y) + jnp.sum(wm * jnp.tanh(m))
    return f


_lean = jax.jit(jax.value_and_grad(objective(lean_mpn), argnums=(0, 1, 2)))
_plain = jax.jit(jax.value_and_grad(objective(lambda p, x, s, m0: plain_sequential(p, x, s, m0, None)),
                                    argnums=(0, 1, 2)))


@HYP
@given(flags=st.lists(st.booleans(), min_size=T, max_size=T), seed=st.integers(0, 2**31 - 1))
def test_lean_scan_equals_the_plain_scan(flags, seed):
    """Outputs, final state and gradients (W, b, eta, lam, inputs, initial state) of the lean scan
    equal JAX's derivative of the plain `lax.scan` of `mpn_step`."""
    p, x, start, m0 = mpn_problem(seed, flags)
    y, m = jax.jit(lean_mpn)(p, x, start, m0)
    y_ref, m_ref = jax.jit(plain_sequential, static_argnums=4)(p, x, start, m0, None)
    # float32 sums in a different order: seed 232950 differs by 2.6e-6 in M after T steps
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m, m_ref, rtol=1e-5, atol=1e-5)
    (v, g), (v_ref, g_ref) = _lean(p, x, m0, start), _plain(p, x, m0, start)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g, g_ref)


def test_lean_scan_gradient_matches_finite_differences():
    """float64 reverse-mode gradient against central differences (jax.test_util.check_grads)."""
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        flags = [True] + [False] * 5 + [True] + [False] * (T - 7)
        p, x, start, m0 = mpn_problem(7, flags, jnp.float64)
        f = objective(lean_mpn)
        check_grads(lambda p, x, m0: f(p, x, m0, start), (p, x, m0), order=1, modes=['rev'], eps=1e-6)


def test_the_network_takes_the_lean_scan():
    """MPN without m_clamp runs memory/lean.py (its jaxpr holds the custom_vjp); lean=False or a
    clamp takes the plain scan; all three agree."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(T, NX)), jnp.float32)
    start = jnp.asarray([True] + [False] * (T - 1))
    out = {}
    for name, kw in (('lean', {}), ('plain', dict(lean=False)), ('clamp', dict(m_clamp=1e6))):
        mod = make_memory('mpn', hidden=NH, eta_init=0.7, **kw)
        v = mod.init(jax.random.PRNGKey(0), x, start)
        jaxpr = str(jax.make_jaxpr(lambda v: mod.apply(v, x, start))(v))
        assert ('custom_vjp' in jaxpr) == (name == 'lean')
        out[name] = mod.apply(v, x, start)[0]
    np.testing.assert_allclose(out['lean'], out['plain'], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out['lean'], out['clamp'], rtol=1e-5, atol=1e-6)


# ---- the fast-tape benchmark and its figure ------------------------------------------------------
def test_tape_benchmark_records_and_figure(tmp_path):
    """benchmarks.throughput.run_tape_benchmarks on a tiny grid: valid transitions and padding as
    the sampler gives them, FLOPs per transition = per-row count x rows / valid, the achieved rate
    and its fraction of the measured peak consistent; plotting.throughput draws the figure."""
    from benchmarks import throughput as tp
    from plotting import throughput as pt

    grid = [tp.BatchConfig('tape', size=1024, lanes=2)]
    eps = jax.tree.map(jnp.asarray, tp.pdm_like_episodes(12))  # 1332 rows: a small buffer to fill
    recs = tp.run_tape_benchmarks((8,), grid, grid, episodes=eps, repeats=2, budget_s=0.1, peak_n=256)
    ups = [r for r in recs if r['kind'] == 'update']
    assert [(r['scan_path'], r['batching']) for r in ups] == [('lean', 'tape'), ('plain', 'tape')]
    for r in ups:
        assert not r.get('error') and r['hidden'] == 8 and r['loss_finite']
        assert r['flops_per_transition'] == pytest.approx(r['flops_per_row'] * r['rows_per_batch']
                                                          / r['valid_transitions'])
        assert r['achieved_flops_per_s'] == pytest.approx(r['flops_per_transition'] * r['transitions_per_s'])
        assert 0 < r['peak_fraction'] == pytest.approx(r['achieved_flops_per_s'] / r['peak_flops_per_s'])
    tape = ups[0]
    # pdm-like episodes are 111 rows: a 512-row lane holds 4 (444 rows, 440 transitions)
    assert tape['tape_lanes'] == 2 and tape['valid_transitions'] == 880
    assert tape['padding_overhead'] == pytest.approx(1 - 880 / 1024)
    out = pt.plot_tapes(recs, tmp_path / 'tapes.png')
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize('lanes, message', [
    (3, 'tape.lanes: 3 does not divide tape.size 1024'),
    (8, 'tape.lanes: a lane of 128 rows (tape.size / tape.lanes) cannot hold one episode of up to 201 rows'),
    (0, 'tape.lanes: must be > 0'),
])
def test_config_checks_tape_lanes(lanes, message):
    from config import ConfigError, load

    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / 'experiments' / 'perceptual_decision_making' / 'tape_mpn.yaml'
    cap = 'episode.max_steps=200'  # a given cap is checked at load; auto once it is measured (cli)
    assert load(path, ['tape.lanes=4', cap])['tape']['lanes'] == 4
    with pytest.raises(ConfigError) as err:
        load(path, [f'tape.lanes={lanes}', cap])
    assert message in str(err.value) and '\n' not in str(err.value)
