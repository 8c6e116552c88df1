"""Fidelity of the AntiReach-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "AntiReach-v0"
MAX_LEN = 15  # 5 + 5 + 0 + 5 steps at the defaults


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(ground_truth=g, anti=a), None) for g, a in ((0, 1), (5, 1), (31, 1), (7, 0), (16, 0))]
    cases += [(dict(ground_truth=3, anti=1), dict(fixation=2, delay=3))]
    pc.check_trials(TASK, cases)
    # options: pro-reaches by default, other dt, timing and rewards
    pc.check_trials(TASK, [(dict(ground_truth=g), None) for g in (2, 20)],
                    dict(anti=False, dt=50, timing={"delay": 150, "decision": 200},
                         rewards={"abort": -0.5, "correct": 2.0, "fail": -1.0}))


def test_other_ring_size():
    """dim_ring changes the shapes: one trial at dim_ring = 8, eagerly, against neurogym's buffer."""
    env, params = make_jax_env(TASK, dim_ring=8)
    assert env.obs_dim == env.num_actions == 9
    u = pc.force_ngym_trial(pc.ngym(TASK, dim_ring=8), ground_truth=3, anti=True)

    @functools.partial(jax.jit, compiler_options=pc.FAST_COMPILE)
    def trial(params, ts):
        state = env.new_trial(jax.random.PRNGKey(0), params, ground_truth=3, anti=1)
        at = jax.vmap(lambda t: state.replace(t=t))(ts)
        return jax.vmap(env.get_obs, in_axes=(0, None))(at, params), jax.vmap(env.gt_now, in_axes=(0, None))(at, params)

    obs, gt = trial(params, jnp.arange(u.ob.shape[0], dtype=jnp.int32))
    np.testing.assert_allclose(np.asarray(obs), u.ob, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(gt), u.gt)
    assert u.gt[-1] == 4


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    # random: each of the 5 decision steps fixates w.p. 1/33, else the first response ends the trial,
    # correct w.p. 1/33: P = (1/33) * sum_{k<5} (1/33)^k
    assert round(sum((1 / 33) ** (k + 1) for k in range(5)), 3) == meta.random
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # the scripted (gt-following) policy
    assert meta.ceiling == 1.0 and perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"go": 100}), "go"),
                     (dict(rewards={"miss": 1.0}), "miss"), (dict(dim_ring=61), "dim_ring")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
