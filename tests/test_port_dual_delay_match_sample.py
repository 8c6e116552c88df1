"""Fidelity of the DualDelayMatchSample-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "DualDelayMatchSample-v0"
MAX_LEN = 40  # 8 periods of 5 steps at the defaults


def cases():
    return [(dict(ground_truth1=g1, ground_truth2=g2, sample1=s, sample2=0.5 - s, test_order=o), None)
            for o in (0, 1) for g1 in (1, 2) for g2 in (1, 2) for s in ((0.0,) if g1 == g2 else (0.5,))]


def test_noise_free_trials_and_step_semantics():
    pc.check_trials(TASK, cases())
    # options: rewards, dt and timing (same timing kinds as the defaults: no recompilation)
    pc.check_trials(TASK, [(dict(ground_truth1=1, ground_truth2=2, sample1=0.5, sample2=0.5, test_order=o),
                            dict(delay2=1)) for o in (0, 1)],
                    dict(dt=50, rewards={"fail": -0.5, "correct": 0.5, "abort": -0.3},
                         timing={"fixation": 100, "test1": 300, "cue2": 150}))


def test_performance_is_any_correct_response():
    """neurogym never resets the performance within a trial: a correct answer in `test1` followed by
    a wrong one in `test2` (or by none) still reports 1, and so does a wrong one in `test1` followed
    by a correct one in `test2`. Port and neurogym, same forced trial, scripted answers."""
    env, new_trials, _ = pc.runner(TASK)
    _, params = make_jax_env(TASK, sigma=0.0)
    forced = dict(ground_truth1=1, ground_truth2=2, sample1=0.0, sample2=0.5, test_order=0)
    t1, t2 = 4 * 5 + 2, 7 * 5 + 1  # steps inside test1 and test2
    answers = ((1, 2, 1.0), (1, 1, 1.0), (2, 2, 1.0), (2, 1, 0.0), (1, 0, 1.0), (0, 0, 0.0))
    script = np.zeros((pc.N_STEPS, pc.N_ENVS), np.int32)
    for i, (a1, a2, _) in enumerate(answers):
        script[t1, i], script[t2, i] = a1, a2
    n = pc.N_ENVS
    states = new_trials(jax.random.split(jax.random.PRNGKey(0), n), params,
                        {k: np.full(n, v) for k, v in forced.items()}, {})
    _, out = pc.port_run(TASK, 3, script=script, states=states, sigma=0.0)
    u = pc.ngym(TASK, sigma=0.0).unwrapped
    for i, (a1, a2, want) in enumerate(answers):
        pc.force_ngym_trial(u, **forced)
        for t in range(MAX_LEN):
            _, _, _, _, info = u.step(int(script[t, i]))
            if info["new_trial"]:
                break
        end = np.flatnonzero(out["new_trial"][:, i])[0]
        assert end == t and info["performance"] == want == out["performance"][end, i], (a1, a2, info)


def test_noise_on_every_channel_in_sample_and_tests():
    every = tuple(range(7))
    pc.check_noise(TASK, noisy={"sample": every, "test1": every, "test2": every}, n_ngym=60)


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    # random: the trial counts unless all 5 steps of test1 miss the answer ((2/3)^5) and test2's first
    # non-zero action (there is one unless all 5 steps draw 0: 3^-5) is the wrong one of two
    random = 1 - (2 / 3) ** 5 * (1 - 0.5 * (1 - 3.0**-5))
    assert meta.random == round(random, 3)
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # answering at every test step: scripted
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_shortest_trial_and_unsupported_arguments():
    env, params = make_jax_env(TASK)
    assert env.shortest_trial(params) == 7 * 5 + 1
    for kw, name in [(dict(abort=True), "abort"), (dict(timing={"delay": 100}), "delay"),
                     (dict(rewards={"miss": 1.0}), "miss"), (dict(dim_ring=4), "dim_ring")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
