"""The double-DQN loss against values computed by hand, and tape/segment agreement."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buffer import Episodes, Segments, Tape, make_tape_buffer
from losses import LossConfig, batch_loss, create_train_state, segment_loss, tape_loss, update


class ScaledObs(nn.Module):
    """Q-values = w * obs: lets a test choose every Q-value by hand (online w=1, target w=2)."""

    @nn.compact
    def __call__(self, x, start, state=None):
        return self.param("w", nn.initializers.ones, ()) * x, state

    def project(self, variables):
        return variables

    def diagnostics(self, intermediates):
        return {}


NET = ScaledObs()
ONLINE = {"params": {"w": jnp.float32(1.0)}}
TARGET = {"params": {"w": jnp.float32(2.0)}}
CFG = LossConfig(gamma=0.9, huber_delta=1.0)

# Episode A, truncated: rows a0, a1, a2 (final obs). Episode B, terminated: rows b0, b1 (final obs).
OBS_A = [[1.0, 2.0], [3.0, 0.5], [0.2, 0.7]]
OBS_B = [[1.5, -1.0], [4.0, 1.0]]
ACT_A, REW_A = [1, 0, 0], [0.5, 1.0, 0.0]
ACT_B, REW_B = [0, 0], [-0.3, 0.0]


def huber(e):
    return 0.5 * e * e if abs(e) <= 1.0 else abs(e) - 0.5


def expected_loss():
    # a0: Q=2 (action 1); a* = argmax online(a1) = 0; target = 0.5 + 0.9 * 2 * 3.0
    # a1: Q=3 (action 0); a* = argmax online(a2) = 1; truncation bootstraps: 1.0 + 0.9 * 2 * 0.7
    # b0: Q=1.5 (action 0); terminated: target = -0.3, no bootstrap
    errs = [2.0 - (0.5 + 0.9 * 6.0), 3.0 - (1.0 + 0.9 * 1.4), 1.5 - (-0.3)]
    return sum(huber(e) for e in errs) / 3, (2.0 + 3.0 + 1.5) / 3


def hand_tape():
    pad = [[0.0, 0.0]]
    return Tape(
        obs=jnp.array(OBS_A + OBS_B + pad),
        action=jnp.array(ACT_A + ACT_B + [0]),
        reward=jnp.array(REW_A + REW_B + [0.0]),
        reset=jnp.array([True, False, False, True, False, True]),
        valid=jnp.array([True] * 5 + [False]),
        mask=jnp.array([True, True, False, True, False, False]),
        bootstrap=jnp.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0]),
    )


def test_tape_loss_matches_hand_computation():
    loss, aux = tape_loss(ONLINE, TARGET, NET, hand_tape(), CFG)
    want, q_mean = expected_loss()
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert float(aux["q_mean"]) == pytest.approx(q_mean, rel=1e-6)
    assert int(aux["transitions"]) == 3


def _two_episodes():
    def pad(rows, n=4):
        return rows + [rows[-1]] * (n - len(rows))

    return Episodes(
        obs=jnp.array([pad(OBS_A), pad(OBS_B)]),
        action=jnp.array([pad(ACT_A), pad(ACT_B)]),
        reward=jnp.array([pad(REW_A), pad(REW_B)]),
        reset=jnp.zeros((2, 4), bool),
        n_rows=jnp.array([3, 2]),
        terminated=jnp.array([False, True]),
    )


def test_tape_from_buffer_gives_the_same_loss():
    tapes = make_tape_buffer(16, 2, tape_size=8)
    state = tapes.add(tapes.init(), _two_episodes())
    want, _ = expected_loss()
    for seed in range(3):  # the packing order is random; the loss must not depend on it
        tape = tapes.sample(state, jax.random.PRNGKey(seed))
        assert int(tape.mask.sum()) == 3
        loss, _ = tape_loss(ONLINE, TARGET, NET, tape, CFG)
        assert float(loss) == pytest.approx(want, rel=1e-6)


def test_segment_loss_is_the_same_per_transition_loss():
    # Each episode as one segment of L = 2 transitions ([B, L + 1] rows), zero-padded.
    seg = Segments(
        obs=jnp.array([OBS_A, OBS_B + [[0.0, 0.0]]]),
        action=jnp.array([ACT_A, ACT_B + [0]]),
        reward=jnp.array([REW_A, REW_B + [0.0]]),
        reset=jnp.array([[True, False, False], [True, False, True]]),
        valid=jnp.array([[True, True, True], [True, True, False]]),
        mask=jnp.array([[True, True, False], [True, False, False]]),
        bootstrap=jnp.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]),
    )
    loss, aux = segment_loss(ONLINE, TARGET, NET, seg, CFG)
    assert float(loss) == pytest.approx(expected_loss()[0], rel=1e-6)
    assert int(aux["transitions"]) == 3


def test_update_steps_params_and_copies_target_periodically():
    tx = optax.sgd(0.1)
    ts = create_train_state(NET, ONLINE, tx, LossConfig(gamma=0.9, target_mode="hard", target_period=2))
    tape = hand_tape()
    ts1, m1 = jax.jit(update)(ts, tape)
    grad = jax.grad(lambda p: batch_loss(p, ONLINE, NET, tape, ts.cfg)[0])(ONLINE)["params"]["w"]
    assert float(ts1.params["params"]["w"]) == pytest.approx(1.0 - 0.1 * float(grad), rel=1e-6)
    assert float(ts1.target_params["params"]["w"]) == 1.0  # not yet: period 2
    ts2, _ = jax.jit(update)(ts1, tape)
    np.testing.assert_allclose(ts2.target_params["params"]["w"], ts2.params["params"]["w"])
    assert int(ts2.updates) == 2 and np.isfinite(float(m1["loss"]))


def test_polyak_target_update():
    ts = create_train_state(NET, ONLINE, optax.sgd(0.0), LossConfig(target_mode="polyak", target_tau=0.25))
    ts = ts.replace(target_params=TARGET)
    ts1, _ = update(ts, hand_tape())
    assert float(ts1.target_params["params"]["w"]) == pytest.approx(0.25 * 1.0 + 0.75 * 2.0)


def test_two_step_return_by_hand():
    # a0: 2-step target = 0.5 + 0.9 * 1.0 + 0.9^2 * V(a2), V(a2) = target Q of argmax online(a2) = 2 * 0.7
    # a1: its next transition does not exist (a2 is the final row): one-step target as before
    # b0: terminated: -0.3
    cfg = LossConfig(gamma=0.9, huber_delta=1.0, n_step=2)
    errs = [2.0 - (0.5 + 0.9 * 1.0 + 0.81 * 1.4), 3.0 - (1.0 + 0.9 * 1.4), 1.5 - (-0.3)]
    loss, _ = tape_loss(ONLINE, TARGET, NET, hand_tape(), cfg)
    assert float(loss) == pytest.approx(sum(huber(e) for e in errs) / 3, rel=1e-6)


def _n_step_reference(q, qt, reward, bootstrap, mask, gamma, n):
    """The n-step double-DQN target of every valid transition, one transition at a time."""
    T = len(reward)
    m = mask.copy()
    m[-1] = False
    targets = np.zeros(T)
    for t in np.flatnonzero(m):
        ret, disc, j = 0.0, 1.0, 0
        while True:
            ret += disc * reward[t + j]
            disc *= gamma
            alive = bootstrap[t + j]
            j += 1
            if j == n or alive == 0 or not m[t + j]:
                break
        s = t + j
        targets[t] = ret + disc * alive * qt[s, np.argmax(q[s])]
    return targets, m


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_n_step_targets_match_a_sequential_reference(n, seed):
    from losses import td_huber

    T = 20  # one length (one compile per n); the random masks give episodes of every length
    rng = np.random.default_rng(seed)
    q, qt = rng.normal(size=(T, 3)), rng.normal(size=(T, 3))
    action = rng.integers(0, 3, T)
    reward = rng.normal(size=T)
    bootstrap = (rng.random(T) > 0.2).astype(float)
    mask = rng.random(T) > 0.3
    loss, _ = td_huber(jnp.array(q, jnp.float32), jnp.array(qt, jnp.float32), jnp.array(action),
                       jnp.array(reward, jnp.float32), jnp.array(bootstrap, jnp.float32), jnp.array(mask),
                       0.9, 1e9, n)  # a huge delta: the squared error shows the target exactly
    targets, m = _n_step_reference(q, qt, reward, bootstrap, mask, 0.9, n)
    err = q[np.arange(T), action] - targets
    np.testing.assert_allclose(np.asarray(loss), np.where(m, 0.5 * err**2, 0.0), rtol=1e-4, atol=1e-4)
