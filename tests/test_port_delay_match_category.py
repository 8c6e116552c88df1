"""Fidelity of the DelayMatchCategory-v0 port against the real neurogym (tests/port_checks.py).

Neurogym draws the two directions with rng.rand() inside _new_trial and does not report them; a
test-only wrapper of its _new_trial (below) records those two draws in the trial dict as
sample_pos / test_pos and replays them when they are passed in, so both envs can be given the same
trial. It also takes the ground truth as the action code (1: "match", 2: "non-match"), so that forced
values can be batched as numbers; the port's own handling of the labels is tested apart."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from collector.ngym_compat import import_neurogym
from tests import port_checks as pc

TASK = "DelayMatchCategory-v0"
MAX_LEN = 27  # 5 + 6 + 10 + 6 steps at the defaults
LABELS = {1: "match", 2: "non-match"}  # neurogym's ground-truth labels by action


class _Replay:
    """A numpy RandomState stand-in for one _new_trial call: rand() from `queue` while it lasts
    (then the real one), every rand() recorded; everything else (choice, randn) the real one's."""

    def __init__(self, rng, queue):
        self.rng, self.queue, self.drawn = rng, list(queue), []

    def __getattr__(self, name):
        return getattr(self.rng, name)

    def rand(self):
        x = self.queue.pop(0) if self.queue else self.rng.rand()
        self.drawn.append(float(x))
        return x


@pytest.fixture(autouse=True)
def ngym_reports_directions(monkeypatch):
    cls = import_neurogym().envs.native.delaymatchcategory.DelayMatchCategory
    original = cls._new_trial

    def _new_trial(self, sample_pos=None, test_pos=None, **kwargs):
        if kwargs.get("ground_truth") in (1, 2):  # the action code, as the port stores it
            kwargs["ground_truth"] = LABELS[kwargs["ground_truth"]]
        real = self.rng
        self.rng = _Replay(real, [x for x in (sample_pos, test_pos) if x is not None])
        try:
            trial = original(self, **kwargs)
            trial["sample_pos"], trial["test_pos"] = self.rng.drawn
        finally:
            self.rng = real
        return trial

    monkeypatch.setattr(cls, "_new_trial", _new_trial)


def cases(pos=((0.1, 0.7), (0.93, 0.02))):
    return [(dict(ground_truth=g, sample_category=c, sample_pos=s, test_pos=t), None)
            for g in (1, 2) for c in (0, 1) for s, t in pos]


def test_noise_free_trials_and_step_semantics():
    pc.check_trials(TASK, cases())
    # options: rewards, dt and timing (timing kinds and shapes as the defaults': no recompilation)
    pc.check_trials(TASK, [(dict(ground_truth=g, sample_category=1, sample_pos=0.4, test_pos=0.55), dict(first_delay=2))
                           for g in (1, 2)],
                    dict(dt=50, rewards={"fail": -1.0, "correct": 0.5, "abort": -0.3},
                         timing={"sample": 300, "test": 200}))


@functools.lru_cache(maxsize=None)
def viewer(dim_ring):
    """(env, view): view(forced) -> noise-free obs [T, D] and gt [T] of a forced trial (jitted)."""
    env, params = make_jax_env(TASK, dim_ring=dim_ring, sigma=0.0)

    @jax.jit
    def view(forced):
        state = env.new_trial(jax.random.PRNGKey(0), params, **forced)
        at = jax.vmap(lambda t: state.replace(t=t))(jnp.arange(MAX_LEN))
        return jax.vmap(env.get_obs, in_axes=(0, None))(at, params), jax.vmap(env.gt_now)(at), state.ends[-1]

    def trial(forced):
        obs, gt, n = view(forced)
        return np.asarray(obs)[: int(n)], np.asarray(gt)[: int(n)]

    return env, trial


def test_another_ring_size():
    env, trial = viewer(3)
    assert env.obs_dim == 4
    u = pc.ngym(TASK, dim_ring=3, sigma=0.0).unwrapped
    for forced, _ in cases():
        u.new_trial(**forced)
        obs, gt = trial(forced)
        np.testing.assert_allclose(obs, u.ob, atol=1e-6, err_msg=str(forced))
        np.testing.assert_array_equal(gt, u.gt)


def test_category_is_invisible_at_two_ring_channels():
    """The table's ceiling: with dim_ring = 2 the ring shows only cos(theta), the same for theta and
    2 pi - theta, which lie in opposite categories; so every observation sequence is as likely under
    match as under non-match and no policy beats 0.5. With 3 channels the directions differ."""
    for dim_ring, invisible in ((2, True), (3, False)):
        _, trial = viewer(dim_ring)
        a, _ = trial(dict(ground_truth=1, sample_category=0, sample_pos=0.3, test_pos=0.8))
        b, _ = trial(dict(ground_truth=2, sample_category=1, sample_pos=0.7, test_pos=0.8))
        assert np.allclose(a, b, atol=1e-6) == invisible


def test_noise_on_the_ring_in_sample_and_test():
    pc.check_noise(TASK, noisy={"sample": (1, 2), "test": (1, 2)})


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}
    pc.check_lengths(TASK, dict(timing={"first_delay": ("truncated_exponential", (600, 300, 3000))}))


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_match_strings_and_unsupported_arguments():
    env, params = make_jax_env(TASK)
    labels = ("match", "non-match", 2)
    got = jax.jit(lambda k: [env.new_trial(k, params, ground_truth=g).trial["ground_truth"] for g in labels])(
        jax.random.PRNGKey(0))
    assert [int(g) for g in got] == [1, 2, 2]
    with pytest.raises(ValueError, match="ground_truth"):
        env.new_trial(jax.random.PRNGKey(0), params, ground_truth="same")
    for kw, name in [(dict(abort=True), "abort"), (dict(timing={"delay": 100}), "delay"), (dict(dim_ring=0), "dim_ring")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
