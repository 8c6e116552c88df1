"""Fidelity of the PerceptualDecisionMakingDelayResponse-v0 port against the real neurogym
(tests/port_checks.py)."""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy.stats import norm

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "PerceptualDecisionMakingDelayResponse-v0"
MAX_LEN = 66  # 0 + 11 + (3..40) + 15 steps at the defaults


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(ground_truth=g, coh=c), dict(delay=3)) for g in (1, 2) for c in (0.0, 25.6, 51.2)]
    cases += [(dict(ground_truth=1, coh=6.4), dict(fixation=2, delay=5, decision=3))]
    pc.check_trials(TASK, cases)
    # options: stim_scale, rewards, dt and timing
    pc.check_trials(TASK, [(dict(ground_truth=g, coh=12.8 * 0.5), None) for g in (1, 2)],
                    dict(dt=50, stim_scale=0.5, rewards={"fail": -1.0, "correct": 0.5, "abort": -0.3},
                         timing={"fixation": 100, "stimulus": 400, "delay": (100, 200, 300, 400, 500, 600, 700, 800),
                                 "decision": 200}))  # timing kinds and shapes as the defaults': no recompilation


def test_noise_on_the_stimulus_channels_in_the_stimulus_period():
    # the twin must not get trial["sigma"]: it would make the noise-free twin noisy
    pc.check_noise(TASK, noisy={"stimulus": (1, 2)}, forced_keys=("ground_truth", "coh"))


def test_forced_trial_sigma_sets_the_noise_std():
    # neurogym draws the stimulus noise with trial["sigma"], which new_trial(sigma=...) may force
    env, new_trials, _ = pc.runner(TASK)
    _, params = make_jax_env(TASK)
    n = pc.N_ENVS
    forced = dict(sigma=np.full(n, 0.3), ground_truth=np.ones(n, int), coh=np.zeros(n))
    states = new_trials(jax.random.split(jax.random.PRNGKey(0), n), params, forced, {})
    _, out = pc.port_run(TASK, 1, states=states)  # always fixate: the forced trial runs to its end
    first = (out["num_tr"] == 1) & (out["period"] == env.periods.index("stimulus"))
    r_p = (out["obs"] - out["clean"])[first][:, 1:].ravel()
    u = pc.ngym(TASK).unwrapped
    r_ng = []
    for _ in range(40):
        u.new_trial(sigma=0.3, ground_truth=1, coh=0.0)
        r_ng.append(u.view_ob("stimulus")[:, 1:].ravel() - 0.5)
    for r in (r_p, np.concatenate(r_ng)):
        assert abs(r.std() / 0.3 - 1) < 5 / math.sqrt(2 * r.size), r.std()


def test_trial_lengths():
    pc.check_lengths(TASK)  # the delay is a choice among 8 values
    pc.check_lengths(TASK, dict(dt=50, timing={"delay": ("uniform", (300, 1300))}))


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, n_ngym=400)
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_ideal_observer_ceiling():
    """The table's ceiling: the likelihood ratio of the two answers depends only on the summed
    difference of the two stimulus channels (11 steps, each channel with N(0, 0.1^2) noise: the
    std check_noise confirms), whose mean is +-coh/100 per step; zero coherence is a guess."""
    analytic = np.mean([0.5 if c == 0 else norm.cdf(c / 100 * math.sqrt(11) / (0.1 * math.sqrt(2)))
                        for c in (0, 6.4, 12.8, 25.6, 51.2)])
    assert abs(analytic - TASK_META[TASK].ceiling) < 5e-4


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(cohs=[1, 2]), "cohs"), (dict(abort=True), "abort"), (dict(stim_scale="x"), "stim_scale"),
                     (dict(timing={"delay1": 100}), "delay1")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
