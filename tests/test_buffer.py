"""Tests for buffer.py: the tape and segment buffers (make_tape_buffer / make_segment_buffer) against
a plain-Python reference ring, and the factories' size validation.

Every stored row is identifiable: obs = (episode id, row offset), action / reward / stored state are
derived from (id, offset), reset flags are drawn at random (forced on row 0). The reference model
replays the contiguous ring writes row by row and calls an episode intact when every one of its
rows still carries it, independently of the buffer's own ep_start / ep_rows bookkeeping.
"""

from __future__ import annotations

import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import buffer
from buffer import Episodes, _sample_segments, _sample_tape, make_segment_buffer, make_tape_buffer

C = 32  # ring capacity (rows)
D = 2  # obs_dim
E, R = 2, 8  # episodes per add call, padded rows per episode (E * R <= C)
N_TAPE = 16  # tape size
N_KEYS = 256  # tapes drawn per check (vmapped)
N_SEG = 1024  # segments drawn per check (enough to hit each of <= ~30 starts: miss chance < 1e-13)
HYP = settings(max_examples=30, deadline=None)
STATE_EXAMPLE = {'m': jnp.zeros((2,), jnp.float32)}


# ----------------------------------------------------------------------------- jitted entry points
# Fixed static shapes, so each is compiled once per session and hypothesis only varies the data.

def ring(capacity, state_example=None):
    """A buffer of `capacity` rows for the tests that only fill the ring (add does not depend on
    the sampling sizes)."""
    return make_tape_buffer(capacity, D, N_TAPE, state_example=state_example)


_add = jax.jit(ring(C).add)


def bare(state):
    """The buffer without its stored states: same pytree structure with or without a state
    example, so the jitted samplers below are not compiled twice."""
    return state.replace(state=None)


@jax.jit
def _bookkeeping(state):
    return buffer.intact(state), buffer.num_transitions(state)


def check_bookkeeping(state, ref):
    intact, num = _bookkeeping(bare(state))
    np.testing.assert_array_equal(np.asarray(intact), ref.intact_rows())
    assert int(num) == ref.num_transitions()


@functools.partial(jax.jit, static_argnums=(2, 3))
def _tapes(state, keys, tape_size, max_episodes=None):
    sample = make_tape_buffer(state.obs.shape[0], D, tape_size, max_episodes=max_episodes).sample
    return jax.vmap(lambda k: sample(state, k))(keys)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _segment_sample(state, key, batch_size, length, burn_in, stride, stored_state):
    return make_segment_buffer(state.obs.shape[0], D, batch_size, length, burn_in, stride, stored_state,
                               STATE_EXAMPLE if stored_state else None).sample(state, key)


def _segments(state, key, batch_size, length, burn_in, stride, stored_state):
    return _segment_sample(state if stored_state else bare(state), key, batch_size, length, burn_in,
                           stride, stored_state)


def _keys(seed, n=N_KEYS):
    return jax.random.split(jax.random.PRNGKey(seed), n)


# ----------------------------------------------------------------------------- reference model
def action_of(eid, off):
    return (7 * eid + 3 * off) % 11


def reward_of(eid, off):
    return 100.0 * eid + off


class Ref:
    """The ring as a list of owners: owner[i] = (episode id, offset) of the row last written there."""

    def __init__(self, capacity):
        self.c = capacity
        self.ptr = 0
        self.owner = [None] * capacity
        self.eps = {}  # id -> dict(n, terminated, reset, ring) in insertion order
        self.next_id = 1  # ids start at 1 so that a zero padding row never looks like a real row

    def add(self, n, terminated, reset):
        eid = self.next_id
        self.next_id += 1
        ring = []
        for off in range(n):
            self.owner[self.ptr] = (eid, off)
            ring.append(self.ptr)
            self.ptr = (self.ptr + 1) % self.c
        reset = [bool(x) for x in reset[:n]]
        reset[0] = True
        self.eps[eid] = dict(n=n, terminated=bool(terminated), reset=reset, ring=ring)
        return eid

    def intact_ids(self):
        return [
            eid for eid, ep in self.eps.items()
            if all(self.owner[i] == (eid, off) for off, i in enumerate(ep['ring']))
        ]

    def broken_ids(self):
        """Episodes of which some but not all rows are still in the ring."""
        out = []
        for eid, ep in self.eps.items():
            held = [self.owner[i] == (eid, off) for off, i in enumerate(ep['ring'])]
            if any(held) and not all(held):
                out.append(eid)
        return out

    def intact_rows(self):
        ok = set(self.intact_ids())
        return np.array([o is not None and o[0] in ok for o in self.owner])

    def num_transitions(self):
        return sum(self.eps[e]['n'] - 1 for e in self.intact_ids())

    def segment_starts(self, stride):
        return {
            (eid, off) for eid in self.intact_ids() for off in range(0, self.eps[eid]['n'] - 1, stride)
        }


def make_batch(ref, lengths, rng, with_state=False, p_terminated=0.5):
    """Episodes [E, R] for the given n_rows (0 = padding episode); registers real ones in `ref`."""
    e = len(lengths)
    obs = np.zeros((e, R, D), np.float32)
    action = np.zeros((e, R), np.int32)
    reward = np.zeros((e, R), np.float32)
    reset = np.zeros((e, R), bool)
    terminated = np.zeros((e,), bool)
    m = np.zeros((e, R, 2), np.float32)
    for j, n in enumerate(lengths):
        # junk in the padding columns: it must never be written to the ring
        obs[j] = -7.0
        action[j] = -3
        reward[j] = -5.0
        reset[j] = rng.random(R) < 0.3
        m[j] = -9.0
        if n == 0:
            continue
        term = rng.random() < p_terminated
        eid = ref.add(n, term, reset[j])
        terminated[j] = term
        off = np.arange(n)
        obs[j, :n, 0] = eid
        obs[j, :n, 1] = off
        action[j, :n] = action_of(eid, off)
        reward[j, :n] = reward_of(eid, off)
        m[j, :n, 0] = eid
        m[j, :n, 1] = off
    return Episodes(
        obs=jnp.asarray(obs),
        action=jnp.asarray(action),
        reward=jnp.asarray(reward),
        reset=jnp.asarray(reset),
        n_rows=jnp.asarray(np.asarray(lengths, np.int32)),
        terminated=jnp.asarray(terminated),
        state={'m': jnp.asarray(m)} if with_state else None,
    )


def fill(batches, seed=0, with_state=False, capacity=C):
    """Add the batches (lists of E episode lengths) to a fresh buffer and to a fresh reference."""
    rng = np.random.default_rng(seed)
    ref = Ref(capacity)
    state = ring(capacity, STATE_EXAMPLE if with_state else None).init()
    for lengths in batches:
        state = _add(state, make_batch(ref, lengths, rng, with_state))
    return state, ref


# Episode lengths (n_rows = T + 1 >= 2), 0 = padding episode in a batch.
lengths_st = st.one_of(st.just(0), st.integers(2, R))
batch_st = st.lists(lengths_st, min_size=E, max_size=E)
batches_st = st.lists(batch_st, min_size=1, max_size=14)
# Long runs of mostly real episodes: at least ~3 laps of the ring.
long_batches_st = st.lists(st.lists(st.one_of(st.integers(2, R), st.just(0)), min_size=E, max_size=E),
                           min_size=16, max_size=30).filter(lambda bs: sum(map(sum, bs)) >= 3 * C)


# ----------------------------------------------------------------------------- checkers
class Tables:
    """Per-episode reference lookups indexed by episode id (0 = no episode)."""

    def __init__(self, ref):
        m = max(ref.eps, default=0) + 1
        self.m = m
        self.n = np.zeros(m, np.int64)
        self.term = np.zeros(m, bool)
        self.intact = np.zeros(m, bool)
        self.reset = np.zeros((m, R), bool)
        for eid, ep in ref.eps.items():
            self.n[eid] = ep['n']
            self.term[eid] = ep['terminated']
            self.reset[eid, :ep['n']] = ep['reset']
        self.intact[ref.intact_ids()] = True

    def ids(self, obs):
        """(id, offset) of rows, with ids clipped into the table (callers check `known`)."""
        eid = np.rint(obs[..., 0]).astype(np.int64)
        off = np.rint(obs[..., 1]).astype(np.int64)
        known = (eid >= 1) & (eid < self.m)
        return np.where(known, eid, 0), np.clip(off, 0, R - 1), known, off


def check_tapes(state, ref, seed, n_tape=N_TAPE, n_keys=N_KEYS, max_episodes=None, coverage=True):
    """Draw n_keys tapes and check every one exactly against the reference (vectorized over tapes
    and rows); returns the set of episode ids seen and the per-tape id lists."""
    t = jax.tree.map(np.asarray, _tapes(bare(state), _keys(seed, n_keys), n_tape, max_episodes))
    tab = Tables(ref)
    intact = set(ref.intact_ids())
    obs, valid = t.obs, t.valid
    k_rows, n = valid.shape
    used = valid.sum(1)
    # valid rows are a prefix, the rest is padding: zero, reset, unmasked, bootstrap 1
    np.testing.assert_array_equal(valid, np.arange(n)[None] < used[:, None])
    pad = ~valid
    assert (obs[pad] == 0).all() and (t.action[pad] == 0).all() and (t.reward[pad] == 0).all()
    assert t.reset[pad].all() and not t.mask[pad].any() and (t.bootstrap[pad] == 1).all()
    if intact and tab.n[list(intact)].max() <= n_tape:
        assert (used > 0).all(), "a tape of a non-empty buffer holds at least one episode"
    eid, off, known, raw_off = tab.ids(obs)
    # every valid row is a row of an intact episode
    assert known[valid].all(), "valid tape row with an unknown episode id"
    assert tab.intact[eid[valid]].all(), (
        f"tape holds rows of non-intact episodes {sorted(set(eid[valid & ~tab.intact[eid]]))}, intact {sorted(intact)}")
    ln = tab.n[eid]
    assert (raw_off[valid] >= 0).all() and (raw_off[valid] < ln[valid]).all()
    # episodes are whole and in order: the tape starts on an episode start; a non-final row is
    # followed by the next row of the same episode; a final row by an episode start or padding
    assert (off[used > 0, 0] == 0).all(), "tape does not start on an episode start"
    nxt_valid = np.concatenate([valid[:, 1:], np.zeros((k_rows, 1), bool)], 1)
    nxt_eid = np.concatenate([eid[:, 1:], np.zeros((k_rows, 1), np.int64)], 1)
    nxt_off = np.concatenate([off[:, 1:], np.zeros((k_rows, 1), np.int64)], 1)
    mid = valid & (off < ln - 1)
    assert (nxt_valid[mid] & (nxt_eid[mid] == eid[mid]) & (nxt_off[mid] == off[mid] + 1)).all(), \
        "episode cut or out of order"
    fin = valid & (off == ln - 1)
    assert (~nxt_valid[fin] | (nxt_off[fin] == 0)).all(), "an episode's final row is followed mid-episode"
    # no episode twice in one tape
    starts = valid & (off == 0)
    keyed = np.where(starts, eid, -1 - np.arange(n)[None])
    srt = np.sort(keyed, 1)
    assert not (srt[:, 1:] == srt[:, :-1]).any(), "an episode appears twice in one tape"
    # row contents
    trans = valid & (off < ln - 1)
    assert (t.action[trans] == action_of(eid, off)[trans]).all()
    assert (t.reward[trans] == reward_of(eid, off)[trans]).all()
    np.testing.assert_array_equal(t.reset[valid], tab.reset[eid, off][valid])
    assert t.reset[starts].all()
    np.testing.assert_array_equal(t.mask, trans)
    boot = np.where(valid & tab.term[eid] & (off == ln - 2), 0.0, 1.0)
    np.testing.assert_array_equal(t.bootstrap, boot)
    # greedy packing: when every intact episode was tried, none left out would have fitted
    k = max_episodes or max(n_tape // 2, 1)
    member = np.zeros((k_rows, tab.m), bool)
    rows_i = np.nonzero(starts)
    member[rows_i[0], eid[rows_i]] = True
    if len(intact) <= k:
        room = n_tape - used
        for e in intact:
            left_out = ~member[:, e]
            assert (tab.n[e] > room[left_out]).all(), f"episode {e} was skipped though it fits"
    seen = set(np.nonzero(member.any(0))[0].tolist())
    if coverage:
        fitting = {e for e in intact if tab.n[e] <= n_tape}
        assert seen == fitting, f"never sampled: {sorted(fitting - seen)}; intact {sorted(intact)}"
        if ref.eps and max(ref.eps) in intact:
            assert max(ref.eps) in seen, "the newest episode is never sampled"
    return seen, [np.nonzero(member[i])[0].tolist() for i in range(k_rows)]


def check_segments(seg, ref, length, burn_in, stride, stored_state):
    """Check a Segments batch exactly against the reference (vectorized); returns the set of
    (episode id, start offset) drawn."""
    obs, valid = np.asarray(seg.obs), np.asarray(seg.valid)
    action, reward, reset = np.asarray(seg.action), np.asarray(seg.reward), np.asarray(seg.reset)
    mask, bootstrap = np.asarray(seg.mask), np.asarray(seg.bootstrap)
    b, L = burn_in, length
    w = b + L + 1
    nb = obs.shape[0]
    assert obs.shape == (nb, w, D) and valid.shape == (nb, w) and seg.burn_in == burn_in
    tab = Tables(ref)
    intact = set(ref.intact_ids())
    assert valid[:, b].all(), "the segment's start row must be a real row"
    e_all, _, known, raw = tab.ids(obs)
    assert known[:, b].all()
    eid, off_s = e_all[:, b], raw[:, b]
    assert tab.intact[eid].all(), f"segments from non-intact episodes {sorted(set(eid[~tab.intact[eid]]))}"
    n = tab.n[eid]
    assert ((off_s % stride == 0) & (off_s >= 0) & (off_s <= n - 2)).all(), "bad segment start"
    j = np.arange(w)[None]
    o = off_s[:, None] - b + j  # offset in the episode of each window row
    ln = n[:, None]
    inside = (o >= 0) & (o < ln)
    np.testing.assert_array_equal(valid, inside)
    exp_obs = np.where(inside[..., None], np.stack([np.broadcast_to(eid[:, None], o.shape), o], -1), 0)
    np.testing.assert_array_equal(obs, exp_obs)
    oc = np.clip(o, 0, R - 1)
    ec = np.broadcast_to(eid[:, None], o.shape)
    trans = inside & (o < ln - 1)
    assert (action[trans] == action_of(ec, oc)[trans]).all() and (action[~inside] == 0).all()
    assert (reward[trans] == reward_of(ec, oc)[trans]).all() and (reward[~inside] == 0).all()
    np.testing.assert_array_equal(reset, np.where(inside, tab.reset[ec, oc], True))
    np.testing.assert_array_equal(mask, trans & (j >= b) & (j < b + L))
    # bootstrap: 1 everywhere for truncated episodes; for terminated ones 0 exactly at the last
    # transition (offset n - 2), except on the window's last row, which has no next row in the
    # window and is never masked, so it is left unchecked.
    term = tab.term[eid][:, None]
    exp_boot = np.where(term & (o == ln - 2), 0.0, 1.0)
    checked = ~term | (j < w - 1)
    np.testing.assert_array_equal(bootstrap[checked], exp_boot[checked])
    if stored_state:
        first = np.maximum(off_s - b, 0)
        np.testing.assert_array_equal(np.asarray(seg.init_state['m']), np.stack([eid, first], -1))
    else:
        assert seg.init_state is None
    return set(zip(eid.tolist(), off_s.tolist()))


# The few static sampler configurations used throughout (each compiled once):
# tapes of N_TAPE rows (default max_episodes), tapes of 6 rows (max_episodes 1 and default), tapes
# of 2 * C rows; segments seg_plain (DRQN: L = 3, no burn-in, default stride) and seg_r2d2
# (L = 2, burn_in = 3, stride 1 or 2, stored state; stride 1 also without stored state).
B_R2D2, L_R2D2 = 3, 2


def seg_plain(state, ref, seed):
    seg = _segments(state, jax.random.PRNGKey(seed), N_SEG, 3, 0, None, False)
    return check_segments(seg, ref, 3, 0, 3, False)  # default stride = L


def seg_r2d2(state, ref, seed, stride, stored_state=True):
    seg = _segments(state, jax.random.PRNGKey(seed), N_SEG, L_R2D2, B_R2D2, stride, stored_state)
    return check_segments(seg, ref, L_R2D2, B_R2D2, stride, stored_state)


# ----------------------------------------------------------------------------- 1. tapes
@HYP
@given(batches=batches_st, seed=st.integers(0, 2**16))
def test_tape_whole_intact_episodes(batches, seed):
    state, ref = fill(batches, seed)
    check_bookkeeping(state, ref)
    check_tapes(state, ref, seed)  # includes: every intact episode (and the newest) is sampled


def test_tape_small_max_episodes_and_long_episodes():
    # max_episodes bounds the candidates; episodes longer than the tape are never packed
    state, ref = fill([[8, 3], [2, 5], [4, 0], [6, 2]], seed=3)
    _, per_tape = check_tapes(state, ref, 11, n_tape=6, max_episodes=1, coverage=False)
    assert all(len(ids) <= 1 for ids in per_tape)
    assert all(ref.eps[e]['n'] <= 6 for ids in per_tape for e in ids)
    seen, _ = check_tapes(state, ref, 13, n_tape=6)  # default max_episodes = 3
    assert seen == {e for e in ref.intact_ids() if ref.eps[e]['n'] <= 6}
    # tape bigger than the ring: everything intact fits, so every tape holds every intact episode
    _, per_tape = check_tapes(state, ref, 12, n_tape=2 * C)
    assert all(set(ids) == set(ref.intact_ids()) for ids in per_tape)


def test_empty_buffer_samples_padding():
    state, ref = fill([])
    check_bookkeeping(state, ref)
    seen, _ = check_tapes(state, ref, 0)  # all padding
    assert not seen
    seg = _segments(state, jax.random.PRNGKey(0), N_SEG, 3, 0, None, False)
    assert not np.asarray(seg.valid).any() and not np.asarray(seg.mask).any() and np.asarray(seg.reset).all()
    assert (np.asarray(seg.obs) == 0).all()


def test_segments_without_any_start_are_padding():
    # Degenerate 1-row episodes (no transition) hold rows but no segment start: like an empty
    # buffer, every window must be padding (no row may leak in through the fallback draw).
    state, ref = fill([[1, 1], [1, 0]])
    assert ref.segment_starts(1) == set() and ref.num_transitions() == 0
    check_bookkeeping(state, ref)
    for seg in (_segments(state, jax.random.PRNGKey(0), N_SEG, 3, 0, None, False),
                _segments(state, jax.random.PRNGKey(1), N_SEG, L_R2D2, B_R2D2, 1, False)):
        assert not np.asarray(seg.valid).any() and not np.asarray(seg.mask).any()
        assert np.asarray(seg.reset).all() and (np.asarray(seg.obs) == 0).all()
        assert (np.asarray(seg.action) == 0).all() and (np.asarray(seg.reward) == 0).all()


# ----------------------------------------------------------------------------- 2. overwritten episodes
@settings(max_examples=25, deadline=None)
@given(batches=long_batches_st, seed=st.integers(0, 2**16))
def test_nothing_from_overwritten_episodes(batches, seed):
    state, ref = fill(batches, seed, with_state=True)
    check_bookkeeping(state, ref)
    broken = set(ref.broken_ids())
    seen, _ = check_tapes(state, ref, seed)  # checks every tape row belongs to an intact episode
    assert not seen & broken
    starts = seg_r2d2(state, ref, seed, stride=2)
    assert not {e for e, _ in starts} & broken
    assert starts == ref.segment_starts(2)
    starts = seg_plain(state, ref, seed + 1)
    assert starts == ref.segment_starts(3)


def test_partly_overwritten_episode_never_sampled():
    # ring of 32: [8, 8] -> rows 0..15, [8, 8] -> 16..31 (ids 1..4), then [6, 0] -> rows 0..5,
    # which cuts the first 6 rows of episode 1 (its rows 6, 7 are still in the ring).
    state, ref = fill([[8, 8], [8, 8], [6, 0]], seed=1, with_state=True)
    assert ref.broken_ids() == [1] and ref.intact_ids() == [2, 3, 4, 5]
    check_bookkeeping(state, ref)
    assert ref.num_transitions() == 7 * 3 + 5
    seen, _ = check_tapes(state, ref, 5)
    assert 1 not in seen
    for stride in (1, 2):
        assert seg_r2d2(state, ref, stride, stride) == ref.segment_starts(stride)
    # the ring's very first write still holds a stale tail of episode 1 (offsets 6, 7)
    assert ref.owner[6] == (1, 6) and ref.owner[7] == (1, 7)


# ----------------------------------------------------------------------------- 3. wrap-around
def test_episode_wrapping_the_ring_is_whole_and_in_order():
    # [7, 8] -> rows 0..14, [8, 8] -> 15..30, [5, 0] -> rows 31, 0, 1, 2, 3 (wraps, cuts episode 1)
    state, ref = fill([[7, 8], [8, 8], [5, 0]], seed=2, with_state=True)
    wrap = 5
    assert ref.eps[wrap]['ring'] == [31, 0, 1, 2, 3]
    assert ref.broken_ids() == [1] and wrap in ref.intact_ids()
    check_bookkeeping(state, ref)
    seen, _ = check_tapes(state, ref, 7)  # whole episodes, in order, checked row by row
    assert wrap in seen
    tapes = _tapes(bare(state), _keys(7), N_TAPE, None)
    obs, valid = np.asarray(tapes.obs), np.asarray(tapes.valid)
    for i in range(N_KEYS):
        rows = np.nonzero(valid[i] & (obs[i, :, 0] == wrap))[0]
        if len(rows):
            np.testing.assert_array_equal(rows, rows[0] + np.arange(5))
            np.testing.assert_array_equal(obs[i, rows, 1], np.arange(5))
    # segments crossing the wrap, with burn-in and stored state read across it
    starts = seg_r2d2(state, ref, 3, stride=1)
    assert {(wrap, o) for o in range(4)} <= starts
    assert starts == ref.segment_starts(1)
    assert {(wrap, 0), (wrap, 3)} <= seg_plain(state, ref, 4)


# ----------------------------------------------------------------------------- 4. segments
@HYP
@given(batches=batches_st, seed=st.integers(0, 2**16))
def test_segments_padding_masks_bootstrap(batches, seed):
    state, ref = fill(batches, seed)
    if not ref.intact_ids():
        return
    starts = seg_plain(state, ref, seed)  # stride = L = 3 (the default)
    assert starts == ref.segment_starts(3), "some segment start is never drawn"


def test_bootstrap_terminated_vs_truncated():
    # deterministic: every episode terminated / every episode truncated
    for p in (0.0, 1.0):
        rng = np.random.default_rng(0)
        ref = Ref(C)
        state = ring(C).init()
        for lengths in ([4, 6], [3, 0], [8, 2]):
            state = _add(state, make_batch(ref, lengths, rng, p_terminated=p))
        assert all(ep['terminated'] == (p == 1.0) for ep in ref.eps.values())
        check_tapes(state, ref, 9)
        tape = _tapes(bare(state), _keys(9), N_TAPE, None)
        assert (np.asarray(tape.bootstrap) == 0).any() == (p == 1.0)
        seg = _segments(state, jax.random.PRNGKey(0), N_SEG, 3, 0, None, False)
        check_segments(seg, ref, 3, 0, 3, False)
        boot = np.asarray(seg.bootstrap)
        assert (boot == 0).any() == (p == 1.0)
        # a zero bootstrap only ever sits on a masked transition
        assert np.asarray(seg.mask)[boot == 0].all() and np.asarray(tape.mask)[np.asarray(tape.bootstrap) == 0].all()


# ----------------------------------------------------------------------------- 5. burn-in, stored state
@HYP
@given(batches=batches_st, seed=st.integers(0, 2**16), stride=st.sampled_from([1, 2]))
def test_burn_in_and_stored_state(batches, seed, stride):
    state, ref = fill(batches, seed, with_state=True)
    if not ref.intact_ids():
        return
    # window = rows s - 3 .. s + 2, init_state = stored state of row max(offset_s - 3, 0)
    assert seg_r2d2(state, ref, seed, stride) == ref.segment_starts(stride)
    seg_r2d2(state, ref, seed + 1, 1, stored_state=False)  # init_state None


def test_stored_state_without_state_example_raises():
    state, _ = fill([[4, 3]])
    with pytest.raises(ValueError):
        _segment_sample(state, jax.random.PRNGKey(0), N_SEG, L_R2D2, B_R2D2, 1, True)


# ----------------------------------------------------------------------------- 6. add / bookkeeping
def test_add_too_large_raises():
    rng = np.random.default_rng(0)
    state = ring(C).init()
    too_big = make_batch(Ref(C), [2, 3, 2, 0, 4], rng)  # 5 * R = 40 padded rows > 32
    with pytest.raises(ValueError):
        _add(state, too_big)
    with pytest.raises(ValueError):
        ring(C).add(state, too_big)
    with pytest.raises(ValueError):
        ring(1)


def test_add_max_rows_bound():
    # max_rows (static) replaces the E * R bound: 5 padded episodes of 8 rows (40 > 32) are fine
    # when at most 32 rows are really added; a bound over the capacity raises even for a small batch.
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError):
        ring(C).add(ring(C).init(), make_batch(Ref(C), [2, 3], rng), max_rows=C + 1)
    add_bounded = jax.jit(ring(C).add, static_argnames='max_rows')
    ref = Ref(C)
    state = ring(C).init()
    for lengths in ([8, 0, 8, 8, 8], [2, 3, 0, 4, 5], [8, 8, 2, 0, 6]):
        state = add_bounded(state, make_batch(ref, lengths, rng), max_rows=C)
        check_bookkeeping(state, ref)
    assert ref.broken_ids() and int(state.ptr) == ref.ptr
    check_tapes(state, ref, 21)


def test_add_exactly_full_batch():
    # E * R == capacity is allowed: a batch of two 8-row episodes into a 16-row ring, twice
    rng = np.random.default_rng(0)
    ref = Ref(16)
    state = ring(16).init()
    add16 = jax.jit(ring(16).add)
    for lengths in ([8, 8], [3, 8]):
        state = add16(state, make_batch(ref, lengths, rng))
    assert ref.intact_ids() == [3, 4] and ref.broken_ids() == [2]  # 1 is entirely overwritten
    np.testing.assert_array_equal(np.asarray(buffer.intact(state)), ref.intact_rows())
    assert int(buffer.num_transitions(state)) == ref.num_transitions() == 2 + 7


@HYP
@given(batches=st.lists(batch_st, min_size=1, max_size=30), seed=st.integers(0, 2**16))
def test_intact_and_num_transitions_match_reference(batches, seed):
    rng = np.random.default_rng(seed)
    ref = Ref(C)
    state = ring(C).init()
    for lengths in batches:  # checked after every add, not only at the end
        state = _add(state, make_batch(ref, lengths, rng))
        check_bookkeeping(state, ref)
    assert int(state.rows_added) == sum(map(sum, batches))
    assert int(state.ptr) == sum(map(sum, batches)) % C


# ----------------------------------------------------------------------------- 7. the factories
@pytest.mark.parametrize('make, kwargs, name', [
    (make_tape_buffer, dict(capacity=1), 'capacity'),
    (make_tape_buffer, dict(capacity=2.5), 'capacity'),
    (make_tape_buffer, dict(obs_dim=0), 'obs_dim'),
    (make_tape_buffer, dict(tape_size=1), 'tape_size'),
    (make_tape_buffer, dict(lanes=0), 'lanes'),
    (make_tape_buffer, dict(lanes=3), 'lanes'),  # does not divide 16
    (make_tape_buffer, dict(lanes=16), 'lanes'),  # lanes of one row hold no episode
    (make_tape_buffer, dict(max_episodes=0), 'max_episodes'),
    (make_segment_buffer, dict(capacity=1), 'capacity'),
    (make_segment_buffer, dict(batch_size=0), 'batch_size'),
    (make_segment_buffer, dict(length=0), 'length'),
    (make_segment_buffer, dict(burn_in=-1), 'burn_in'),
    (make_segment_buffer, dict(stride=0), 'stride'),
    (make_segment_buffer, dict(stored_state=True), 'stored_state'),  # no state example
])
def test_factory_refuses_bad_sizes(make, kwargs, name):
    good = dict(capacity=C, obs_dim=D, tape_size=N_TAPE) if make is make_tape_buffer else \
        dict(capacity=C, obs_dim=D, batch_size=4, length=3)
    make(**good)  # the good sizes are accepted
    with pytest.raises(ValueError, match=name):
        make(**{**good, **kwargs})


def test_factory_binds_sizes_and_counts_bytes():
    tape = make_tape_buffer(C, D, N_TAPE, lanes=2, max_episodes=5)
    seg = make_segment_buffer(C, D, 4, 3, burn_in=2, stride=1, stored_state=True, state_example=STATE_EXAMPLE)
    assert (tape.capacity, tape.obs_dim, tape.sizes.tape_size, tape.sizes.lanes, tape.sizes.max_episodes,
            tape.sizes.rows) == (C, D, N_TAPE, 2, 5, N_TAPE)
    assert (seg.sizes.batch_size, seg.sizes.length, seg.sizes.burn_in, seg.sizes.stride, seg.sizes.stored_state,
            seg.sizes.rows) == (4, 3, 2, 1, True, 4 * 6)
    for b in (tape, seg):
        # nbytes (from the shapes alone) is what init really allocates
        assert b.nbytes == sum(x.nbytes for x in jax.tree.leaves(b.init()))
    # the stored states add C x 2 float32 to the same ring
    assert seg.nbytes - tape.nbytes == C * 2 * 4


@pytest.mark.parametrize('tape_size, lanes, max_episodes', [(N_TAPE, 1, None), (6, 1, 1), (N_TAPE, 2, None), (2 * C, 4, 3)])
def test_factory_tape_sample_is_the_sampling_computation(tape_size, lanes, max_episodes):
    state, _ = fill([[8, 3], [2, 5], [4, 0], [6, 2]], seed=3)
    sample = make_tape_buffer(C, D, tape_size, lanes=lanes, max_episodes=max_episodes).sample
    key = jax.random.PRNGKey(tape_size + lanes)
    want = _sample_tape(state, key, tape_size, max_episodes, lanes)
    for got in (sample(state, key), jax.jit(sample)(state, key)):
        jax.tree.map(np.testing.assert_array_equal, got, want)


@pytest.mark.parametrize('length, burn_in, stride, stored_state', [(3, 0, None, False), (2, 3, 1, True), (2, 3, 2, False)])
def test_factory_segment_sample_is_the_sampling_computation(length, burn_in, stride, stored_state):
    state, _ = fill([[8, 3], [2, 5], [4, 0], [6, 2]], seed=3, with_state=True)
    b = make_segment_buffer(C, D, 16, length, burn_in, stride, stored_state, STATE_EXAMPLE)
    key = jax.random.PRNGKey(length + burn_in)
    want = _sample_segments(state, key, 16, length, burn_in, stride, stored_state)
    for got in (b.sample(state, key), jax.jit(b.sample)(state, key)):
        jax.tree.map(np.testing.assert_array_equal, got, want)
        assert got.burn_in == burn_in


_can_sample = jax.jit(ring(C).can_sample)


@HYP
@given(batches=st.lists(st.lists(st.one_of(st.just(0), st.integers(1, R)), min_size=E, max_size=E), max_size=12),
       seed=st.integers(0, 2**16))
def test_can_sample_is_some_transition_held(batches, seed):
    # 1-row episodes (no transition) included: they hold rows but nothing to sample
    state, ref = fill(batches, seed)
    can = bool(_can_sample(state))
    assert can == (int(buffer.num_transitions(state)) > 0) == (ref.num_transitions() > 0)
    assert bool(make_segment_buffer(C, D, 4, 3).can_sample(state)) == can
    # a segment batch has real rows exactly when the buffer can be sampled
    seg = _segments(state, jax.random.PRNGKey(seed), N_SEG, 3, 0, None, False)
    assert bool(np.asarray(seg.valid).any()) == can
