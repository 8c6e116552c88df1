"""Fidelity of the PostDecisionWager-v0 port against the real neurogym (tests/port_checks.py).

The port keeps neurogym's overlapping `pre_sure` period in its timing but gives it no steps of its
own, so the generic length and noise checks (which add up every period's steps and expect port
samples of every period) are replaced by the two short checks below."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "PostDecisionWager-v0"
MAX_LEN = 27  # 1 + 8 + 17 + 1 steps at most at the defaults
COHS = (0, 3.2, 6.4, 12.8, 25.6, 51.2)


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(wager=w, ground_truth=g, coh=c), None) for w in (1, 0) for g in (0, 1) for c in (0, 51.2)]
    pc.check_trials(TASK, cases)
    # options: rewards, dt and timing (same timing kinds as the defaults: no recompilation)
    pc.check_trials(TASK, [(dict(wager=w, ground_truth=1, coh=12.8), None) for w in (1, 0)],
                    dict(dt=50, rewards={"fail": -0.5, "correct": 2.0, "abort": -0.3},
                         timing={"stimulus": ("truncated_exponential", (300, 200, 600)),
                                 "pre_sure": ("uniform", (300, 450)), "decision": 200}))


def test_noise_on_every_channel_in_stimulus():
    env, params = make_jax_env(TASK)
    expected = float(params.sigma) / math.sqrt(float(params.dt))
    ng = pc.ngym_residuals(TASK, {}, 150, env.trial_keys)
    _, out = pc.port_run(TASK, 1)  # always fixate
    res = out["obs"].astype(np.float64) - out["clean"]
    for (p, c), r_ng in ng.items():
        if p == "pre_sure":  # inside the delay, checked there (and neurogym keeps stale pre_sure
            continue  # indices from an earlier wager trial in start_ind on non-wager trials)
        if p != "stimulus":  # no noise anywhere else
            assert np.abs(r_ng).max() < 1e-6, (p, c)
            continue
        r_p = res[..., c][out["period"] == env.periods.index(p)]
        for r in (r_ng, r_p):
            assert abs(r.std() / expected - 1) < 5 / math.sqrt(2 * r.size), (p, c, r.std(), r.size)
            assert abs(r.mean()) < 5 * expected / math.sqrt(r.size), (p, c)
    quiet = out["period"] != env.periods.index("stimulus")
    assert np.abs(res[quiet]).max() < 1e-6


def test_trial_lengths():
    pt = pc.port_lengths(TASK, {}, 8)
    ng = pc.ngym_lengths(TASK, {}, 1500)
    assert pc.two_sample_chi2_p(pt, ng) > 1e-3, (np.unique(pt, return_counts=True), np.unique(ng, return_counts=True))
    # 1 + (1..8) + (12..17) + 1 steps: pre_sure adds none
    assert 15 <= min(pt.min(), ng.min()) and max(pt.max(), ng.max()) <= MAX_LEN


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    # random: the one decision step draws action 1 (pays on ground_truth 1, half the trials) or the
    # sure bet (0.7 on wager trials, half the trials) with probability 1/4 each
    assert meta.random == round(0.25 * 0.5 + 0.25 * 0.5 * 0.7, 3)
    pc.check_table_figure(TASK, perf["random"], meta.random)
    # neurogym compares the action with the 0-based ground truth: following the gt never pays
    assert perf["oracle"][0] == 0 and perf["fixate"][0] == 0


def test_ideal_observer_ceiling():
    """The table's ceiling, derived. Action 2 never pays and action 1 pays exactly on ground_truth-1
    trials, so the best policy answers 1 on non-wager trials (performance 1/2 on average, whatever it
    sees) and, on wager trials, takes the sure bet (0.7) unless q = P(ground_truth 1 | evidence)
    exceeds 0.7. The evidence is D = the summed difference of the two stimulus channels over the n
    stimulus steps, N(-+ n coh / 100, 2 n sd^2), n = floor(x / 100) with x exponential (mean 180 ms)
    truncated to [100, 900), sd the per-step noise (sigma / sqrt(dt), which the noise test confirms).
    Ceiling = 1/4 + 1/2 E[max(q, 0.7)], integrated on a fine grid of D."""
    env, params = make_jax_env(TASK)
    sd = float(params.sigma) / math.sqrt(float(params.dt))
    assert list(np.asarray(params.cohs)) == pytest.approx(COHS)
    k = np.arange(1, 9)
    p_n = np.exp(-100 * k / 180) - np.exp(-100 * (k + 1) / 180)
    p_n /= p_n.sum()
    m = np.asarray(COHS) / 100
    wager = 0.0
    for n, pn in zip(k, p_n):
        s = math.sqrt(2 * n) * sd
        d = np.linspace(-n * m.max() - 10 * s, n * m.max() + 10 * s, 20001)
        one = norm.pdf(d[:, None], -n * m, s).mean(1) / 2  # density of D and ground_truth 1
        zero = norm.pdf(d[:, None], n * m, s).mean(1) / 2
        wager += pn * np.trapezoid(np.maximum(one, 0.7 * (one + zero)), d)
    ceiling = 0.25 + 0.5 * wager
    meta = TASK_META[TASK]
    assert meta.ceiling_by == "ideal observer" and meta.ceiling == round(ceiling, 3), ceiling
    # a policy blind to the stimulus (action 1 without a sure option, else the sure bet) gets
    # 1/4 + 0.7 / 2 = 0.6: the default target asks for more, i.e. for using the evidence
    assert 0.25 + 0.35 < meta.target < ceiling


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(abort=True), "abort"), (dict(dim_ring=3), "dim_ring"), (dict(rewards={"sure": 0.5}), "sure"),
                     (dict(timing={"pre_sure": 1500}), "pre_sure"), (dict(timing={"pre_sure": lambda: 600}), "pre_sure"),
                     (dict(rewards={"correct": 0.0}), "correct")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
