"""Fidelity of the ProbabilisticReasoning-v0 port against the real neurogym (tests/port_checks.py).

Neurogym draws the ground truth after the forced locations and shapes (a forced ground_truth is
overwritten), so the step-by-step cases use shapes whose summed weight is so far from 0 that the
draw is certain; the law of the draw is checked apart, against the formula, in both envs."""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from collector.tasks.probabilistic_reasoning import SHAPE_WEIGHT, ideal_choice
from tests import port_checks as pc

TASK = "ProbabilisticReasoning-v0"
MAX_LEN = 35  # 5 + 4 * 5 + (4..5) + 5 steps at the defaults
# (locs, shapes) with |log_odd| >= 7.3: the ground truth is certain (p within 5e-8 of 0 or 1)
SURE = [((0, 1, 2, 3), (9, 1, 2, 3)), ((3, 1, 0, 2), (0, 8, 7, 6)), ((2, 0, 3, 1), (5, 9, 9, 4)),
        ((1, 3, 2, 0), (4, 4, 0, 0))]


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(locs=l, shapes=s), None) for l, s in SURE]
    cases += [(dict(locs=l, shapes=s), dict(delay=d)) for (l, s), d in zip(SURE[:2], (4, 5))]
    pc.check_trials(TASK, cases)
    # options: shape weights (reversed: shape 0 now weighs +10), rewards, dt and timing of the same kinds
    pc.check_trials(TASK, [(dict(locs=l, shapes=s), None) for l, s in SURE[:2]],
                    dict(dt=50, rewards={"fail": -1.0, "correct": 0.5, "abort": -0.3},
                         shape_weight=list(SHAPE_WEIGHT[::-1]),
                         timing={"fixation": 200, "stimulus1": 300, "delay": ("uniform", (100, 300))}))


def test_ground_truth_law():
    """P(ground_truth = 1 | shapes) = 1 / (10^-log_odd + 1), in both envs."""
    env, new_trials, _ = pc.runner(TASK)
    _, params = make_jax_env(TASK)
    n = pc.N_ENVS
    durations = {p: np.full(n, 5, np.int32) for p in env.periods}  # the shapes check_trials compiled
    for shapes in ((5, 6, 3, 8), (5, 4, 6, 3), (6, 4, 2, 5)):
        log_odd = sum(SHAPE_WEIGHT[s] for s in shapes)
        p = 1 / (10 ** -log_odd + 1)
        forced = dict(locs=np.tile(np.arange(4), (n, 1)), shapes=np.tile(shapes, (n, 1)))
        port = np.concatenate([np.asarray(new_trials(jax.random.split(jax.random.PRNGKey(i), n), params,
                                                     forced, durations).trial["ground_truth"])
                               for i in range(6)])
        u = pc.ngym(TASK, seed=sum(shapes)).unwrapped
        ngym = np.array([u.new_trial(locs=(0, 1, 2, 3), shapes=shapes)["ground_truth"] for _ in range(500)])
        for x in (port, ngym):
            assert abs(x.mean() - p) < 4 * np.sqrt(p * (1 - p) / x.size), (shapes, p, x.mean(), x.size)


def test_another_number_of_locations():
    env, params = make_jax_env(TASK, n_loc=2)
    assert env.obs_dim == 21 and env.periods == ("fixation", "stimulus0", "stimulus1", "delay", "decision")
    u = pc.ngym(TASK, n_loc=2).unwrapped

    @functools.partial(jax.jit, compiler_options=pc.FAST_COMPILE)
    def view(locs, shapes, delay):
        state = env.new_trial(jax.random.PRNGKey(0), params, durations={"delay": delay}, locs=locs, shapes=shapes)
        at = jax.vmap(lambda t: state.replace(t=t))(jnp.arange(MAX_LEN))
        return jax.vmap(env.get_obs, in_axes=(0, None))(at, params), jax.vmap(env.gt_now)(at), state.ends[-1]

    for locs, shapes in (((1, 0), (9, 3)), ((0, 1), (2, 0))):
        u.new_trial(locs=locs, shapes=shapes)
        obs, gt, n = view(np.array(locs), np.array(shapes), u.end_ind["delay"] - u.start_ind["delay"])
        np.testing.assert_allclose(np.asarray(obs)[: int(n)], u.ob, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(gt)[: int(n)], u.gt)


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pc.check_lengths(TASK, n_batches=2, n_ngym=300)


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, n_ngym=500)
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0  # following the drawn ground truth
    meta = TASK_META[TASK]
    # random: the first non-zero action among the 5 decision steps is right half the time
    assert meta.random == round(0.5 * (1 - 3.0 ** -5), 3)
    pc.check_table_figure(TASK, perf["random"], meta.random)
    # the ideal observer (the shapes are shown without noise) chooses the likelier side: its
    # performance is E[max(p, 1 - p)] over the 10^4 equally likely shape draws ...
    w = np.asarray(SHAPE_WEIGHT)[np.array(list(itertools.product(range(10), repeat=4)))].sum(1)
    p = 1 / (10.0 ** -w + 1)
    assert meta.ceiling == round(float(np.maximum(p, 1 - p).mean()), 3)
    # ... and on the port's own trials, how often that choice is the drawn ground truth
    env, new_trials, _ = pc.runner(TASK)
    _, params = make_jax_env(TASK)
    keys = jax.random.split(jax.random.PRNGKey(11), 16 * pc.N_ENVS).reshape(16, pc.N_ENVS, -1)
    hits = np.concatenate([np.asarray(ideal_choice(t) == env.gt_action(t))
                           for t in (new_trials(k, params, {}, {}).trial for k in keys)])
    pc.check_table_figure(TASK, (float(hits.mean()), hits.size), meta.ceiling)


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"stimulus4": 100}), "stimulus4"),
                     (dict(n_loc=0), "n_loc"), (dict(shape_weight=["a"]), "shape_weight")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
    env, params = make_jax_env(TASK)
    with pytest.raises(ValueError, match="ground_truth"):
        env.new_trial(jax.random.PRNGKey(0), params, ground_truth=1)
