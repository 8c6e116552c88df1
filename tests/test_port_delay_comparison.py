"""Fidelity of the DelayComparison-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "DelayComparison-v0"
MAX_LEN = 26  # 5 + 5 + 10 + 5 + 1 steps at the defaults


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(ground_truth=g, vpair=vp), None) for g in (1, 2) for vp in [(18, 10), (34, 26)]]
    cases += [(dict(ground_truth=2, vpair=(22, 14)), dict(fixation=1, delay=3, decision=2))]
    pc.check_trials(TASK, cases)
    # options: other pairs, rewards, dt and timing (shapes and timing kinds as the defaults': the
    # compiled runner is reused)
    pairs = [(5, 1.5), (3, 9), (2, 4), (8, 6), (7, 7.5)]
    pc.check_trials(TASK, [(dict(ground_truth=g, vpair=vp), None) for g in (1, 2) for vp in pairs[:2]],
                    dict(dt=50, vpairs=pairs, rewards={"fail": -1.0, "correct": 0.5, "abort": -0.3},
                         timing={"delay": 350, "decision": 200}))


def test_noise_on_both_channels_in_the_stimulus_periods():
    pc.check_noise(TASK, noisy={"stimulus1": (0, 1), "stimulus2": (0, 1)})


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}
    pc.check_lengths(TASK, dict(timing={"delay": ("truncated_exponential", (600, 300, 3000))}))


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_ceiling_of_the_scripted_observer():
    """The table's ceiling: comparing the mean stimulus of the two periods. Every default pair is
    8 apart on a range of 24, so the represented values differ by 1/6; each period has 5 steps of
    N(0, 0.1^2) noise (the std check_noise confirms), so the comparison errs with probability
    Phi(-(1/6) / (0.1 * sqrt(2/5)))."""
    _, params = make_jax_env(TASK)
    pairs = np.asarray(params.extra["vpairs"])
    lo, hi = pairs.min(), pairs.max()
    gap = np.abs(pairs[:, 0] - pairs[:, 1]) / (hi - lo) / 2
    std = float(params.sigma) / math.sqrt(float(params.dt)) * math.sqrt(2 / 5)
    assert abs(np.mean(norm.cdf(gap / std)) - TASK_META[TASK].ceiling) < 5e-4


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(dim_ring=3), "dim_ring"), (dict(timing={"stimulus": 100}), "stimulus"),
                     (dict(vpairs=[(1, 1)]), "vpairs"), (dict(vpairs=[1, 2]), "vpairs")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
