"""Fidelity of the OneTwoThreeGo-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "OneTwoThreeGo-v0"
MAX_LEN = 78  # (1..9) + (6..18) + 1 + I + 1 + I + 1 + I + 12 steps, I in {7, 8, 10, 11, 12}, at dt = 80


def test_noise_free_trials_and_step_semantics():
    # interval forced to interval1's duration (as sampled) or, neurogym's quirk, to another value:
    # a forced interval changes the reward's target, not the periods
    cases = [(dict(interval=80.0 * i), dict(interval1=i, fixation=f)) for i, f in ((7, 1), (10, 5), (12, 9))]
    cases += [(dict(interval=v), dict(interval1=10)) for v in (560.0, 1200.0)]
    pc.check_trials(TASK, cases)
    # options: other dt, timing, prod_margin and rewards
    pc.check_trials(TASK, [({}, dict(interval1=i)) for i in (10, 16)],
                    dict(dt=50, prod_margin=0.05, timing={"s1": 150, "s2": 50, "response": 400},
                         rewards={"abort": -0.5, "correct": 2.0, "fail": -1.0}))


def test_interval2_and_interval3_follow_interval1():
    _, new_trials, _ = pc.runner(TASK)  # the file's compiled trial sampler
    _, params = make_jax_env(TASK)
    states = new_trials(jax.random.split(jax.random.PRNGKey(0), pc.N_ENVS), params, {}, {})
    steps = np.diff(np.asarray(states.ends), prepend=0, axis=1)
    assert (steps[:, 5] == steps[:, 3]).all() and (steps[:, 7] == steps[:, 3]).all()
    np.testing.assert_array_equal(np.asarray(states.trial["interval"]), steps[:, 3] * 80.0)


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pt = pc.port_lengths(TASK, {}, n_batches=8)
    ng = pc.ngym_lengths(TASK, {}, 800)
    assert pc.two_sample_chi2_p(pt, ng) > 1e-3
    lo, hi = 1 + 6 + 3 + 3 * 7 + 12, 9 + 18 + 3 + 3 * 12 + 12
    assert lo <= min(pt.min(), ng.min()) and max(pt.max(), ng.max()) <= hi == MAX_LEN


def random_performance(dt=80.0, margin=0.2, response=12):
    """The uniformly random policy's performance: presses before interval3 do not end the trial; in
    interval3 + response (I + 12 steps) the first press comes at step j w.p. 2^-(j+1), t_prod = j dt,
    correct when |t_prod - I dt| <= margin I dt + 25; I = floor(ms / dt) for ms in 600..1000 step 100,
    equally likely."""
    total = 0.0
    for ms in (600, 700, 800, 900, 1000):
        i = int(ms // dt)
        hits = [j for j in range(i + response) if abs(j * dt - i * dt) <= margin * i * dt + 25]
        total += sum(2.0 ** -(j + 1) for j in hits) / 5
    return total


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, n_ngym=400)  # long trials: 400 neurogym trials a policy
    meta = TASK_META[TASK]
    assert round(random_performance(), 3) == meta.random
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # the scripted (gt-following) policy
    assert meta.ceiling == 1.0 and perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"interval3": 100}), "interval3"),
                     (dict(timing={"interval2": 100}), "interval2"), (dict(rewards={"miss": 1.0}), "miss")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
