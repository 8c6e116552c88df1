"""Fidelity of the MotorTiming-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "MotorTiming-v0"
MAX_LEN = 80  # 6 + (12..37) + 0 + (20 or 37) steps at the defaults (dt = 80)


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(production_ind=i), dict(cue=c)) for i, c in ((0, 12), (1, 12), (0, 30), (1, 37))]
    pc.check_trials(TASK, cases)
    # options: a set cue of 2 steps, other dt, prod_margin and rewards
    pc.check_trials(TASK, [(dict(production_ind=i), dict(cue=25)) for i in (0, 1)],
                    dict(dt=50, prod_margin=0.05, timing={"fixation": 300, "set": 100},
                         rewards={"abort": -0.5, "correct": 2.0, "fail": -1.0}))


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pt = pc.port_lengths(TASK, {}, n_batches=8)
    ng = pc.ngym_lengths(TASK, {}, 800)
    assert pc.two_sample_chi2_p(pt, ng) > 1e-3
    # fixation 6 + cue (neurogym's uniform(1000, 3000) ms: 12..37 steps) + set 0 + production 20 or 37
    lengths = {6 + c + p for c in range(12, 38) for p in (20, 37)}
    assert set(np.unique(pt)) <= lengths and set(np.unique(ng)) <= lengths


def random_performance(dt=80.0, margin=0.2):
    """The uniformly random policy's performance: the first press (probability 1/2 per step) comes at
    production step j w.p. 2^-(j+1) (j < floor(2 P / dt), else a timeout), t_prod = j dt, correct
    when |t_prod - P| <= margin P + 25; P = 800 or 1500 ms, equally likely."""
    total = 0.0
    for p in (800.0, 1500.0):
        hits = [j for j in range(int(2 * p / dt)) if abs(j * dt - p) <= margin * p + 25]
        total += 0.5 * sum(2.0 ** -(j + 1) for j in hits)
    return total


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, n_ngym=400)  # long trials: 400 neurogym trials a policy
    meta = TASK_META[TASK]
    assert round(random_performance(), 3) == meta.random
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # the scripted (gt-following) policy
    assert meta.ceiling == 1.0 and perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"production": 100}), "production"),
                     (dict(prod_margin="wide"), "prod_margin"), (dict(rewards={"miss": 1.0}), "miss")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
