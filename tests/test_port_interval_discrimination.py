"""Fidelity of the IntervalDiscrimination-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import jax
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "IntervalDiscrimination-v0"
MAX_LEN = 40  # 3 + (3..7) + (10..18) + (3..7) + 6 + 3 steps at the defaults (dt = 80)


def test_noise_free_trials_and_step_semantics():
    # neurogym's new_trial ignores keyword arguments: the durations set the trial
    pairs = [(4, 5), (5, 4), (5, 5), (3, 7), (7, 3)]
    pc.check_trials(TASK, [({}, dict(stim1=a, stim2=b, delay1=10)) for a, b in pairs])
    pc.check_trials(TASK, [({}, dict(stim1=a, stim2=b)) for a, b in pairs[:3]],
                    dict(dt=50, rewards={"fail": -1.0, "correct": 0.5, "abort": -0.3},
                         timing={"delay1": ("uniform", (400, 700)), "delay2": 250, "decision": 200}))


def test_ground_truth_follows_the_durations():
    env, params = make_jax_env(TASK)
    for a, b, gt in ((4, 5, 2), (6, 3, 1), (5, 5, 2)):
        trial = env.new_trial(jax.random.PRNGKey(0), params, durations=dict(stim1=a, stim2=b)).trial
        assert int(trial["ground_truth"]) == gt and float(trial["duration1"]) == 80 * a


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pc.check_lengths(TASK)
    pc.check_lengths(TASK, dict(dt=100, timing={"stim2": [300, 500, 800], "delay1": ("constant", 500)}))


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)
    assert perf["fixate"][0] == 0


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"stim3": 100}), "stim3")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
    env, params = make_jax_env(TASK)
    with pytest.raises(ValueError, match="duration1"):
        env.new_trial(jax.random.PRNGKey(0), params, duration1=400)
