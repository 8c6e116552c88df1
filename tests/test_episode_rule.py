"""The episode rule (collector/episode.py): the pure cut rule against a plain sequential reference,
and both collectors (host: real neurogym envs; jax: the pure-JAX port) cutting and resetting the
episodes of one task by that same rule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.episode import EpisodeSpec, advance
from collector.host import HostCollector
from collector.jax_collector import JaxCollector
from collector.tasks import make_jax_env
from memory import QNetwork, make_memory

TASK = "PerceptualDecisionMaking-v0"
# Variable trials (2 + 3, 5 or 8 stimulus steps + up to 3 decision steps; a random choice in the
# decision period ends the trial) so that with trials=3, max_steps=25 some episodes are cut by
# their trial count and some by their length.
KWARGS = dict(timing={"fixation": 100, "stimulus": ("choice", [300, 500, 800]), "delay": 0, "decision": 300})
NUM_ENVS, STEPS = 8, 120


def reference_cuts(spec: EpisodeSpec, trial_end: list[bool]) -> tuple[list[int], list[bool]]:
    """Plain sequential reading of the rule for one env: trial_end[t] says step t ended a trial.
    Returns (the steps after which an episode ends, start[t + 1]: the memory resets before the
    observation that follows step t)."""
    cuts, start = [], []
    first = 0  # first step of the current episode
    for t, end in enumerate(trial_end):
        trials_so_far = sum(trial_end[first:t + 1])
        length = t + 1 - first
        ended = length == spec.max_steps or (spec.trials is not None and trials_so_far == spec.trials)
        if ended:
            cuts.append(t)
            first = t + 1
        start.append(ended or (end and spec.reset_on_trial))
    return cuts, start


@settings(max_examples=60, deadline=None)
@given(
    trials=st.one_of(st.none(), st.integers(1, 4)),
    max_steps=st.integers(1, 12),
    reset_on_trial=st.booleans(),
    streams=st.lists(st.lists(st.booleans(), min_size=30, max_size=30), min_size=1, max_size=4),
)
def test_cut_rule_matches_a_sequential_reference(trials, max_steps, reset_on_trial, streams):
    spec = EpisodeSpec(trials=trials, max_steps=max_steps, reset_on_trial=reset_on_trial)
    trial_end = np.array(streams, bool).T  # [T, N]
    n = trial_end.shape[1]
    pos, ep_trials = np.zeros(n, np.int64), np.zeros(n, np.int64)
    ended, start = [], []
    for t in range(trial_end.shape[0]):
        cut = advance(spec, pos, ep_trials, trial_end[t])
        np.testing.assert_array_equal(cut.steps, pos + 1)
        np.testing.assert_array_equal(cut.start, cut.trial_start | cut.ended)
        np.testing.assert_array_equal(cut.trial_start, trial_end[t] & reset_on_trial)
        pos, ep_trials = cut.pos, cut.ep_trials
        assert pos.dtype == np.int64 and ep_trials.dtype == np.int64
        ended.append(cut.ended)
        start.append(cut.start)
    for j in range(n):
        cuts, ref_start = reference_cuts(spec, list(trial_end[:, j]))
        np.testing.assert_array_equal(np.flatnonzero(np.array(ended)[:, j]), cuts)
        np.testing.assert_array_equal(np.array(start)[:, j], ref_start)


def test_cut_rule_is_the_same_under_jit():
    spec = EpisodeSpec(trials=2, max_steps=5, reset_on_trial=True)
    trial_end = np.random.default_rng(0).random((40, 3)) < 0.4

    def scan(pos, ep_trials, xs, step):
        out = []
        for x in xs:
            cut = step(pos, ep_trials, x)
            pos, ep_trials = cut.pos, cut.ep_trials
            out.append((cut.ended, cut.start, cut.steps))
        return [np.stack([np.asarray(o[i]) for o in out]) for i in range(3)]

    z = np.zeros(3, np.int32)
    host = scan(z, z, trial_end, lambda p, e, x: advance(spec, p, e, x))
    jitted = jax.jit(lambda p, e, x: advance(spec, p, e, x, jnp))
    dev = scan(jnp.asarray(z), jnp.asarray(z), trial_end, jitted)
    for a, b in zip(host, dev):
        np.testing.assert_array_equal(a, b)


def tiny_net():
    return QNetwork(memory=make_memory("gru", hidden=4), num_actions=3, head=())


def check_episodes(eps, spec: EpisodeSpec) -> tuple[np.ndarray, np.ndarray]:
    """Check every recorded episode against the rule; return (steps, trials) per episode.

    The trial boundaries come from the observations: this task's fixation input (obs[:, 0]) is 1
    exactly on the first step of each trial (the one-step fixation period), so row t starts a
    trial, i.e. step t - 1 ended one, iff obs[t, 0] == 1."""
    lengths, trials = [], []
    for e in np.flatnonzero(np.asarray(eps.n_rows) > 0):
        rows = int(eps.n_rows[e])
        steps = rows - 1  # the last row is the final observation, without an action
        obs0 = np.asarray(eps.obs[e, :rows, 0])
        assert set(np.unique(obs0)) <= {0.0, 1.0}
        trial_end = list(obs0[1:] == 1.0)  # trial_end[t]: step t ended a trial
        cuts, start = reference_cuts(spec, trial_end)
        assert cuts[0] == steps - 1, (cuts, steps)  # the episode ends exactly where the rule cuts it
        reset = np.asarray(eps.reset[e, :rows])
        assert reset[0]
        # later rows (the final row too) reset exactly at trial starts, when reset_on_trial
        np.testing.assert_array_equal(reset[1:], np.array(trial_end) & spec.reset_on_trial)
        assert np.all(np.asarray(eps.action[e, steps]) == 0) and np.asarray(eps.reward[e, steps]) == 0
        lengths.append(steps)
        trials.append(sum(trial_end))
    return np.array(lengths), np.array(trials)


@pytest.mark.parametrize("reset_on_trial", [True, False])
def test_host_and_jax_collectors_cut_and_reset_episodes_alike(reset_on_trial):
    spec = EpisodeSpec(trials=3, max_steps=25, reset_on_trial=reset_on_trial)
    net = tiny_net()
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.ones((1,), bool))

    # random acting (epsilon 1): the same policy on both backends, whatever the observations
    host = HostCollector(TASK, KWARGS, NUM_ENVS, seed=1, stream=0, network=net, spec=spec)
    host_eps, _ = host.run(params, STEPS, 1.0, jax.random.PRNGKey(1))
    env, env_params = make_jax_env(TASK, **KWARGS)
    col = JaxCollector(env, env_params, net, spec, NUM_ENVS, STEPS)
    _, jax_eps, stats = jax.jit(col.collect)(params, col.init(jax.random.PRNGKey(2)), 1.0, jax.random.PRNGKey(3))
    jax_eps = jax.device_get(jax_eps)
    assert int(stats.dropped_episodes) == 0

    h_len, h_trials = check_episodes(host_eps, spec)
    j_len, j_trials = check_episodes(jax_eps, spec)
    for lengths, trials in ((h_len, h_trials), (j_len, j_trials)):
        assert len(lengths) >= 25
        # both ways of ending occur: by the trial count and by the length alone
        assert (trials == spec.trials).any() and ((lengths == spec.max_steps) & (trials < spec.trials)).any()
    # same rule, same task, same policy: the same episode statistics within noise (the host's first
    # episode per env is one step short: neurogym's reset() consumed a step)
    assert abs(h_len.mean() - j_len.mean()) <= 0.15 * j_len.mean()
    assert abs(h_trials.mean() - j_trials.mean()) <= 0.15 * j_trials.mean()
    assert abs((h_trials == spec.trials).mean() - (j_trials == spec.trials).mean()) <= 0.25
