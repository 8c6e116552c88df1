"""Collection from real NeuroGym environments."""
import importlib.util
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collector.host import EpisodeSpec, HostCollector, env_seeds, evaluate
from collector.ngym_compat import make_env
from memory import QNetwork, make_memory

TASK = "PerceptualDecisionMaking-v0"  # trials of exactly 22 steps with the default timing


def small_net():
    return QNetwork(memory=make_memory("mpn", hidden=4, input_bias=True), num_actions=3, head=(8,))


def init_params(net):
    return net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.ones((1,), bool))


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_neurogym_imports_without_torch_and_leaves_no_placeholder():
    code = (
        "import sys; from collector.ngym_compat import import_neurogym, make_env\n"
        "ng = import_neurogym(); env = make_env('PerceptualDecisionMaking-v0')\n"
        "assert 'torch' not in sys.modules and 'torch.nn' not in sys.modules\n"
        "try:\n    import torch\nexcept ModuleNotFoundError:\n    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_episodes_are_whole_trials_with_final_row_and_reset_flags():
    net = small_net()
    params = init_params(net)
    spec = EpisodeSpec(trials=2, max_steps=100, reset_on_trial=True)
    col = HostCollector(TASK, {}, 3, seed=7, stream=0, network=net, spec=spec, store_state=True)
    eps, stats = col.run(params, 150, 1.0, jax.random.PRNGKey(1))
    n = int((eps.n_rows > 0).sum())
    assert n >= 6  # 3 envs x 150 steps / 44 steps per episode
    for e in range(n):
        rows = int(eps.n_rows[e])
        # reset() consumed step 0 of each env's first trial, so its first episode is one step short
        assert rows - 1 in (43, 44)
        offset = 44 - (rows - 1)
        resets = np.flatnonzero(eps.reset[e, :rows])
        np.testing.assert_array_equal(resets, [0, 22 - offset, rows - 1])
        # stored states are the states the policy carried: replaying the rows from the first
        # stored state reproduces every later one
        state0 = jax.tree.map(lambda x: x[e, 0], eps.state)
        for t in (5, 22 - offset, rows - 1):
            _, s = net.apply(params, eps.obs[e, :t], eps.reset[e, :t], state0)
            np.testing.assert_allclose(s, eps.state[e, t], atol=1e-5)
    assert stats.performance.size >= 15
    assert set(np.unique(stats.performance)) <= {0.0, 1.0}
    assert set(np.unique(stats.steps)) == {22}


def test_rows_reproduce_the_real_env_and_episodes_chain():
    net = small_net()
    params = init_params(net)
    spec = EpisodeSpec(trials=None, max_steps=30, reset_on_trial=False)
    col = HostCollector(TASK, {}, 1, seed=3, stream=0, network=net, spec=spec)
    eps, _ = col.run(params, 60, 0.5, jax.random.PRNGKey(2))
    assert list(eps.n_rows[:2]) == [31, 31]
    assert eps.reset[0, 0] and not eps.reset[0, 1:31].any()  # memory resets only at episode starts
    # the final row of episode 0 is the first observation of episode 1
    np.testing.assert_array_equal(eps.obs[0, 30], eps.obs[1, 0])
    env = make_env(TASK)
    env.unwrapped.seed(env_seeds(3, 0, 1)[0])
    obs = [np.array(env.reset()[0])]
    rewards = []
    for a in list(eps.action[0, :30]) + list(eps.action[1, :30]):
        o, r, *_ = env.step(int(a))
        obs.append(np.array(o))
        rewards.append(r)
    np.testing.assert_allclose(np.concatenate([eps.obs[0, :30], eps.obs[1, :31]]), np.stack(obs), atol=1e-6)
    np.testing.assert_allclose(np.concatenate([eps.reward[0, :30], eps.reward[1, :30]]), rewards, atol=1e-6)


def test_evaluation_is_repeatable_and_counts_trials():
    net = small_net()
    params = init_params(net)
    spec = EpisodeSpec(trials=5, max_steps=200)
    a = evaluate(net, params, TASK, {}, spec, num_envs=4, seed=0, num_trials=30)
    b = evaluate(net, params, TASK, {}, spec, num_envs=4, seed=0, num_trials=30)
    assert a == b and a["trials"] == 30
    assert 0.0 <= a["performance"] <= 1.0
