"""Fidelity of the PulseDecisionMaking-v0 port against the real neurogym (tests/port_checks.py).

Neurogym's new_trial builds the pulses and the tie-break from its own draws (rng.random(n_bin) twice,
rng.uniform(-0.1, 0.1)) and only records forced values; a test-only wrapper of its _new_trial
(below) replays forced pulse1 / pulse2 / tie in place of those draws, so both envs can be given
the same trial."""
from __future__ import annotations

from math import comb

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from collector.ngym_compat import import_neurogym
from tests import port_checks as pc

TASK = "PulseDecisionMaking-v0"
MAX_LEN = 250  # 50 + 6 * (1 + 24) + 50 steps at the defaults (dt = 10)


class _Replay:
    """A numpy RandomState stand-in for one _new_trial call: random(n) yields draws that reproduce
    the queued 0/1 pulse trains (0 where a pulse, just below 1 elsewhere), uniform() the queued tie;
    a None entry (or anything else) is the real one's."""

    def __init__(self, rng, pulses, tie):
        self.rng, self.pulses, self.tie = rng, list(pulses), tie

    def __getattr__(self, name):
        return getattr(self.rng, name)

    def random(self, n):
        x = self.pulses.pop(0) if self.pulses else None
        return self.rng.random(n) if x is None else np.where(np.asarray(x) > 0, 0.0, 1 - 1e-9)

    def uniform(self, *args):
        return self.rng.uniform(*args) if self.tie is None else self.tie


@pytest.fixture(autouse=True)
def ngym_takes_pulses(monkeypatch):
    cls = import_neurogym().envs.native.perceptualdecisionmaking.PulseDecisionMaking
    original = cls._new_trial

    def _new_trial(self, pulse1=None, pulse2=None, tie=None, **kwargs):
        real = self.rng
        self.rng = _Replay(real, [pulse1, pulse2], tie)
        try:
            trial = original(self, **kwargs)
        finally:
            self.rng = real
        return trial

    monkeypatch.setattr(cls, "_new_trial", _new_trial)


def cases():
    a, b, c = [1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1]
    return [(dict(pulse1=x, pulse2=y, tie=t), None)
            for x, y, t in ((a, b, 0.05), (b, a, -0.07), (a, c, 0.01), (c, a, 0.02), (c, a, -0.02))]


def test_noise_free_trials_and_step_semantics():
    pc.check_trials(TASK, cases())
    # options: rewards, dt and timing (same timing kinds as the defaults: no recompilation)
    pc.check_trials(TASK, [(dict(pulse1=[1, 1, 0, 0, 1, 0], pulse2=[0, 1, 1, 1, 1, 1], tie=0.0), dict(bin3=2))],
                    dict(dt=20, rewards={"fail": -0.5, "correct": 0.5, "abort": -0.3},
                         timing={"fixation": 200, "bin1": 400, "cue4": 40, "decision": 100}))


def test_another_number_of_bins():
    env, params = make_jax_env(TASK, n_bin=3)
    assert env.periods[-3:] == ("cue2", "bin2", "decision") and len(env.periods) == 8
    u = pc.ngym(TASK, n_bin=3).unwrapped
    n = 175  # 50 + 3 * 25 + 50 steps

    def view(forced):  # noise-free obs [T, D] and gt [T] of a forced trial
        state = env.new_trial(jax.random.PRNGKey(0), params, **forced)
        at = jax.vmap(lambda t: state.replace(t=t))(jnp.arange(n))
        return jax.vmap(env.get_obs, in_axes=(0, None))(at, params), jax.vmap(env.gt_now)(at), state.ends[-1]

    view = jax.jit(view, compiler_options=pc.FAST_COMPILE)
    for x, y, t in (([1, 0, 1], [0, 1, 1], 0.03), ([0, 1, 0], [1, 0, 0], -0.03)):
        u.new_trial(pulse1=x, pulse2=y, tie=t)
        obs, gt, length = view(dict(pulse1=jnp.asarray(x, jnp.float32), pulse2=jnp.asarray(y, jnp.float32),
                                    tie=jnp.float32(t)))
        assert int(length) == u.ob.shape[0] == n
        np.testing.assert_allclose(obs, u.ob, atol=1e-6)
        np.testing.assert_array_equal(gt, u.gt)


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=10, forced_keys=("pulse1", "pulse2"))


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=20)
    assert set(pt) == set(ng) == {MAX_LEN}


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, n_ngym=150)
    meta = TASK_META[TASK]
    # random: the first non-zero action of the 50 decision steps (there is one unless all draw 0)
    # is the correct one of two
    assert meta.random == round(0.5 * (1 - 3.0**-50), 3)
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_ideal_observer_ceiling():
    """The pulses are seen without noise, so the ideal observer counts them: it is right whenever the
    counts differ (the tie-break is below 1 in size) and at chance on equal counts (the tie-break is
    an unseen draw). With counts ~ Bin(6, 0.3) and Bin(6, 0.7), P(equal) = sum_k C(6, k)^2 (0.3 *
    0.7)^6 = C(12, 6) 0.21^6, so the ceiling is 1 - P(equal) / 2. Measured on the port's trials and on
    neurogym's: the same frequency of equal counts, and the ground truth follows the counts."""
    p_equal = comb(12, 6) * 0.21**6
    meta = TASK_META[TASK]
    assert meta.ceiling_by == "ideal observer" and meta.ceiling == round(1 - p_equal / 2, 3)
    _, new_trials, _ = pc.runner(TASK)
    _, params = make_jax_env(TASK)
    keys = jax.random.split(jax.random.PRNGKey(1), 8 * pc.N_ENVS).reshape(8, pc.N_ENVS, -1)
    trials = [new_trials(k, params, {}, {}).trial for k in keys]
    d = np.concatenate([np.asarray(t["pulse2"].sum(1) - t["pulse1"].sum(1)) for t in trials])
    gt = np.concatenate([np.asarray(t["ground_truth"]) for t in trials])
    u = pc.ngym(TASK).unwrapped
    ng = [u.new_trial() for _ in range(600)]
    d_ng = np.array([t["pulse2"].sum() - t["pulse1"].sum() for t in ng])
    gt_ng = np.array([t["ground_truth"] for t in ng])
    for dd, g in ((d, gt), (d_ng, gt_ng)):
        np.testing.assert_array_equal(g[dd != 0], dd[dd != 0] > 0)
        eq = dd == 0
        assert abs(eq.mean() - p_equal) < 4 * np.sqrt(p_equal * (1 - p_equal) / dd.size)
        assert abs(g[eq].mean() - 0.5) < 4 * np.sqrt(0.25 / eq.sum())


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(abort=True), "abort"), (dict(n_bin=0), "n_bin"),
                     (dict(p_pulse=(0.1, 0.2, 0.3)), "p_pulse"), (dict(timing={"cue6": 10}), "cue6"),
                     (dict(rewards={"miss": 1.0}), "miss")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
