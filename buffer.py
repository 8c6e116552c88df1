"""Replay buffers for recurrent double DQN, as pure functions on a pytree state (flashbax style).

Both buffers share one ring of *rows*. An episode of T transitions is stored as T + 1 rows:
row t holds obs_t, the action taken on it and the reward that followed; the extra final row holds
the episode's final observation and carries no action. Keeping that row lets the loss take the
bootstrap for transition t from Q[t + 1] of the same forward pass, and it is the only extra cost.
Capacity is counted in rows. docs/batching.md describes both batching modes in full.

Writes are contiguous, so the ring always overwrites its oldest row first; an episode is handed out
only while its first and last rows still carry its id, which is exactly while it is whole.

- make_tape_buffer: samples a fixed-size tape [N] of whole episodes, packed end to end, padded at
  the end (or [K, N / K] in K lanes).
- make_segment_buffer: samples [B, burn_in + L + 1] windows cut from episodes (DRQN / R2D2),
  zero-padded, optionally with the memory state stored at collection time.

Each returns a `Buffer`: init / add / sample / can_sample with the sizes bound and validated once,
so callers jit or vmap them like any pure function. Shapes are static under jit: the tape size,
batch size, segment length and burn-in are Python ints.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Episodes:
    """A batch of whole episodes as the collector emits them, padded to R rows each.

    obs [E, R, D] float32; action [E, R] int32 (action taken on obs r; meaningless on the final row);
    reward [E, R] float32 (reward that followed action r); reset [E, R] bool (memory start flag of
    each row: True on row 0 and, when the memory resets at trial boundaries, on trial starts);
    n_rows [E] int32 (T + 1; 0 marks a padding episode); terminated [E] bool (True: the episode ended
    in a terminal state, so its last transition does not bootstrap; False: truncation);
    state: memory-state pytree with leaves [E, R, ...] carried INTO each row, or None.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    reset: jax.Array
    n_rows: jax.Array
    terminated: jax.Array
    state: Any = None


@struct.dataclass
class BufferState:
    """The ring of rows. Per-row episode bookkeeping: ep_id (-1 = never written), offset of the row
    within its episode, ep_start (ring index of the episode's first row), ep_rows (its row count)."""

    obs: jax.Array  # [C, D]
    action: jax.Array  # [C]
    reward: jax.Array  # [C]
    reset: jax.Array  # [C] bool
    last: jax.Array  # [C] bool: the episode's final row (no action)
    terminated: jax.Array  # [C] bool: on final rows, the episode terminated (no bootstrap)
    ep_id: jax.Array  # [C] int32
    offset: jax.Array  # [C] int32
    ep_start: jax.Array  # [C] int32
    ep_rows: jax.Array  # [C] int32
    state: Any  # pytree [C, ...] or None
    ptr: jax.Array  # next ring index to write
    next_id: jax.Array  # id of the next episode added
    rows_added: jax.Array  # total rows ever written (for statistics)


@struct.dataclass
class Tape:
    """A tape of whole episodes, [N] rows, or [K, N / K] when packed in K lanes (each lane a tape
    of its own). reset: memory start flags (True at every episode start and
    on padding rows); valid: the row belongs to a sampled episode; mask: the row is a transition that
    enters the loss (valid and not a final row); bootstrap: 0.0 where the transition's next row ends
    a terminated episode, else 1.0."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    reset: jax.Array
    valid: jax.Array
    mask: jax.Array
    bootstrap: jax.Array


@struct.dataclass
class Segments:
    """B windows of W = burn_in + L + 1 rows each, fields [B, W, ...] as in Tape. The window of a
    segment starting at row s covers rows s - burn_in .. s + L of its episode; rows outside the
    episode are zero padding (valid False, reset True). mask covers only the L rows s .. s + L - 1
    that are transitions; row s + L is there for the bootstrap. init_state: memory state [B, ...]
    carried into the window's first row (R2D2's stored state), or None for the initial state (DRQN)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    reset: jax.Array
    valid: jax.Array
    mask: jax.Array
    bootstrap: jax.Array
    init_state: Any = None
    burn_in: int = struct.field(pytree_node=False, default=0)


def _init(capacity: int, obs_dim: int, state_example: Any = None) -> BufferState:
    """An empty ring of `capacity` rows of obs [obs_dim]. state_example: one unbatched memory state
    to store per row (R2D2), or None to store none. Sizes are validated by the make_* factories."""
    c = capacity
    state = None
    if state_example is not None:
        state = jax.tree.map(lambda x: jnp.zeros((c,) + jnp.shape(x), jnp.result_type(x)), state_example)
    return BufferState(
        obs=jnp.zeros((c, obs_dim), jnp.float32),
        action=jnp.zeros((c,), jnp.int32),
        reward=jnp.zeros((c,), jnp.float32),
        reset=jnp.zeros((c,), bool),
        last=jnp.zeros((c,), bool),
        terminated=jnp.zeros((c,), bool),
        ep_id=jnp.full((c,), -1, jnp.int32),
        offset=jnp.zeros((c,), jnp.int32),
        ep_start=jnp.zeros((c,), jnp.int32),
        ep_rows=jnp.zeros((c,), jnp.int32),
        state=state,
        ptr=jnp.zeros((), jnp.int32),
        next_id=jnp.zeros((), jnp.int32),
        rows_added=jnp.zeros((), jnp.int32),
    )


def _capacity(state: BufferState) -> int:
    """Rows of the ring (static)."""
    return state.obs.shape[0]


def _add(state: BufferState, eps: Episodes, max_rows: int | None = None) -> BufferState:
    """Append a batch of whole episodes (leaves [E, R, ...]), in order, overwriting the oldest rows.

    The rows added in one call must fit in the ring, so that a call never overwrites its own
    rows: checked statically against E * R, or against `max_rows` when the caller knows a
    tighter bound on sum(n_rows) (the jitted collector does). The bound depends on the batch's
    shape, so it is checked per call (at trace time), not by the factories."""
    c = _capacity(state)
    n_ep, r = eps.action.shape
    bound = n_ep * r if max_rows is None else max_rows
    if bound > c:
        raise ValueError(f"adding up to {bound} rows at once needs more than the buffer's {c} rows")
    rows = eps.n_rows.astype(jnp.int32)
    first = state.ptr + jnp.cumsum(rows) - rows  # unwrapped start of each episode
    local = jnp.arange(r, dtype=jnp.int32)[None, :]
    written = local < rows[:, None]
    ring = (first[:, None] + local) % c
    idx = jnp.where(written, ring, c).reshape(-1)  # index c is out of range: dropped

    def put(buf, val):
        return buf.at[idx].set(val.reshape((n_ep * r,) + val.shape[2:]).astype(buf.dtype), mode="drop")

    ids = state.next_id + jnp.arange(n_ep, dtype=jnp.int32)
    is_last = local == rows[:, None] - 1
    bcast = lambda v: jnp.broadcast_to(v[:, None], (n_ep, r))
    new_state = None
    if state.state is not None:
        new_state = jax.tree.map(put, state.state, eps.state)
    total = rows.sum()
    return state.replace(
        obs=put(state.obs, eps.obs),
        action=put(state.action, eps.action),
        reward=put(state.reward, eps.reward),
        reset=put(state.reset, eps.reset | (local == 0)),
        last=put(state.last, is_last),
        terminated=put(state.terminated, is_last & bcast(eps.terminated)),
        ep_id=put(state.ep_id, bcast(ids)),
        offset=put(state.offset, jnp.broadcast_to(local, (n_ep, r))),
        ep_start=put(state.ep_start, bcast(first % c)),
        ep_rows=put(state.ep_rows, bcast(rows)),
        state=new_state,
        ptr=(state.ptr + total) % c,
        next_id=state.next_id + n_ep,
        rows_added=state.rows_added + total,
    )


def intact(state: BufferState) -> jax.Array:
    """[C] bool: the row belongs to an episode none of whose rows has been overwritten."""
    c = _capacity(state)
    end = (state.ep_start + state.ep_rows - 1) % c
    return (
        (state.ep_id >= 0)
        & (state.ep_id[state.ep_start] == state.ep_id)
        & (state.ep_id[end] == state.ep_id)
    )


def num_transitions(state: BufferState) -> jax.Array:
    """Number of transitions (non-final rows) of whole episodes currently held."""
    return jnp.sum(intact(state) & ~state.last)


def _gather(state: BufferState, ring: jax.Array, valid: jax.Array):
    """Gather rows at ring indices; padding rows are zero and carry a reset flag."""
    zero = lambda x: jnp.where(valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim)), x, 0)
    last = state.last[ring] & valid
    return dict(
        obs=zero(state.obs[ring]),
        action=zero(state.action[ring]),
        reward=zero(state.reward[ring]),
        reset=state.reset[ring] | ~valid,
        valid=valid,
        mask=valid & ~last,
        end_terminal=last & state.terminated[ring],
    )


def _bootstrap(end_terminal: jax.Array) -> jax.Array:
    """bootstrap[t] = 0 when row t + 1 is the final row of a terminated episode (along the last axis)."""
    nxt = jnp.concatenate([end_terminal[..., 1:], jnp.zeros_like(end_terminal[..., :1])], axis=-1)
    return jnp.where(nxt, 0.0, 1.0).astype(jnp.float32)


def _sample_tape(state: BufferState, key: jax.Array, tape_size: int, max_episodes: int | None = None,
                 lanes: int = 1) -> Tape:
    """A tape of `tape_size` rows made of whole episodes drawn uniformly without replacement
    from every intact episode (the newest included), packed greedily in random order: an
    episode that does not fit in the room left is skipped and the next one tried. Rows after
    the last packed episode are padding. max_episodes (static) bounds how many episodes are
    tried; default tape_size // 2, enough because every episode has at least 2 rows.

    lanes (static, divides tape_size): K > 1 packs the episodes into K lanes of
    tape_size // K rows each, every episode whole inside one lane (the first lane with room
    for it), padding only at each lane's end; the Tape's fields are then [K, tape_size // K]
    and the loss runs the memory over the lanes side by side. lanes=1: fields [tape_size].
    The sizes are validated by make_tape_buffer."""
    c = _capacity(state)
    n = tape_size
    per_lane = n // lanes
    k = min(max_episodes or max(n // 2, 1), c)
    starts = intact(state) & (state.offset == 0)
    score = jnp.where(starts, jax.random.uniform(key, (c,)), -1.0)
    top, cand = jax.lax.top_k(score, k)
    ok = top >= 0.0
    lengths = jnp.where(ok, state.ep_rows[cand], 0)

    def pack(used, x):
        length, good = x
        fits = good & (used + length <= per_lane)  # [lanes]
        lane = jnp.argmax(fits)  # the first lane with room
        take = fits[lane]
        start = lane * per_lane + used[lane]  # position on the flat tape
        return used.at[lane].add(jnp.where(take, length, 0)), (take, start)

    used, (take, tape_start) = jax.lax.scan(pack, jnp.zeros((lanes,), jnp.int32), (lengths, ok))
    at = jnp.where(take, tape_start, n)  # n: out of range, dropped
    # start position of the episode that covers each tape position (-1: none), then which
    # candidate that is (with lanes, candidates are not in position order)
    cover = jax.lax.cummax(jnp.zeros((n,), jnp.int32).at[at].set(tape_start + 1, mode="drop")) - 1
    who = jnp.zeros((n,), jnp.int32).at[at].set(jnp.arange(k, dtype=jnp.int32), mode="drop")
    pos = jnp.arange(n, dtype=jnp.int32)
    o = who[jnp.maximum(cover, 0)]
    # a lane's rows past its used length are padding (cover there is the lane's last episode)
    valid = (cover >= 0) & (pos % per_lane < used[pos // per_lane])
    ring = (cand[o] + pos - cover) % c
    g = _gather(state, ring, valid)
    shape = (n,) if lanes == 1 else (lanes, per_lane)
    g = {name: x.reshape(shape + x.shape[1:]) for name, x in g.items()}
    return Tape(
        obs=g["obs"],
        action=g["action"],
        reward=g["reward"],
        reset=g["reset"],
        valid=g["valid"],
        mask=g["mask"],
        bootstrap=_bootstrap(g["end_terminal"]),
    )


def _sample_segments(
    state: BufferState,
    key: jax.Array,
    batch_size: int,
    length: int,
    burn_in: int = 0,
    stride: int | None = None,
    stored_state: bool = False,
) -> Segments:
    """B segments of L transitions, drawn uniformly with replacement among the segment starts of
    intact episodes: every `stride`-th transition of an episode (stride defaults to L, the usual
    non-overlapping chunks). Each window also holds up to `burn_in` rows before the start and the
    row after the last transition (for the bootstrap), zero-padded outside the episode.
    stored_state: return the memory state stored at collection time for the window's first row
    inside the episode (requires a ring made with a state example). The sizes are validated by
    make_segment_buffer."""
    c = _capacity(state)
    stride = stride or length
    can_start = intact(state) & ~state.last & (state.offset % stride == 0)
    p = can_start.astype(jnp.float32)
    s = jax.random.choice(key, c, (batch_size,), p=p / jnp.maximum(p.sum(), 1.0))
    rel = jnp.arange(-burn_in, length + 1, dtype=jnp.int32)[None, :]
    in_episode = state.offset[s][:, None] + rel
    valid = (in_episode >= 0) & (in_episode < state.ep_rows[s][:, None]) & can_start[s][:, None]
    ring = (s[:, None] + rel) % c
    g = _gather(state, ring, valid)
    train = (rel >= 0) & (rel < length)
    init_state = None
    if stored_state:
        # the factory guarantees a state example; this catches a ring built elsewhere without one
        if state.state is None:
            raise ValueError("stored_state needs a buffer initialised with a state example")
        first = (s - jnp.minimum(state.offset[s], burn_in)) % c
        init_state = jax.tree.map(lambda x: x[first], state.state)
    return Segments(
        obs=g["obs"],
        action=g["action"],
        reward=g["reward"],
        reset=g["reset"],
        valid=valid,
        mask=g["mask"] & train,
        bootstrap=_bootstrap(g["end_terminal"]),
        init_state=init_state,
        burn_in=burn_in,
    )


# ---- the factories -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TapeSizes:
    """The static sizes of a tape buffer's samples (see _sample_tape)."""

    tape_size: int
    lanes: int
    max_episodes: int | None

    @property
    def rows(self) -> int:
        """Rows of one sampled batch (what the network runs over)."""
        return self.tape_size


@dataclasses.dataclass(frozen=True)
class SegmentSizes:
    """The static sizes of a segment buffer's samples (see _sample_segments)."""

    batch_size: int
    length: int
    burn_in: int
    stride: int | None
    stored_state: bool

    @property
    def rows(self) -> int:
        """Rows of one sampled batch: B windows of burn_in + L + 1 rows."""
        return self.batch_size * (self.burn_in + self.length + 1)


@dataclasses.dataclass(frozen=True)
class Buffer:
    """A replay buffer: pure functions on a BufferState with the sizes bound (flashbax style).

    init() -> BufferState: the empty ring.
    add(state, episodes, max_rows=None) -> BufferState: append an Episodes batch (see _add).
    sample(state, key) -> Tape | Segments: one batch drawn with `key`.
    can_sample(state) -> bool array []: the ring holds at least one transition of a whole episode
      (then every tape or segment sample holds at least one, given episodes that fit).
    nbytes: bytes of the ring's arrays, from jax.eval_shape(init) (for up-front memory checks).
    capacity, obs_dim, sizes: the bound sizes, for reference."""

    init: Callable[[], BufferState]
    add: Callable[..., BufferState]
    sample: Callable[[BufferState, jax.Array], Any]
    can_sample: Callable[[BufferState], jax.Array]
    nbytes: int
    capacity: int
    obs_dim: int
    sizes: TapeSizes | SegmentSizes


def _int(name: str, value: Any, low: int, what: str = "") -> int:
    """value as a Python int >= low, else a ValueError naming the argument."""
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None
    if v < low:
        raise ValueError(f"{name} must be at least {low}{what}, got {v}")
    return v


def _can_sample(state: BufferState) -> jax.Array:
    """bool []: some whole episode holds a transition (which is also a segment start)."""
    return num_transitions(state) > 0


def _buffer(capacity: int, obs_dim: int, state_example: Any, sample: Callable,
            sizes: TapeSizes | SegmentSizes) -> Buffer:
    """The Buffer of a ring of `capacity` rows with `sample` bound (sizes already validated)."""
    capacity = _int("capacity", capacity, 2, " rows")
    obs_dim = _int("obs_dim", obs_dim, 1)
    init = functools.partial(_init, capacity, obs_dim, state_example)
    shapes = jax.eval_shape(init)  # no arrays are made: only the shapes and dtypes
    nbytes = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    return Buffer(init=init, add=_add, sample=sample, can_sample=_can_sample, nbytes=nbytes,
                  capacity=capacity, obs_dim=obs_dim, sizes=sizes)


def make_tape_buffer(capacity: int, obs_dim: int, tape_size: int, lanes: int = 1,
                     max_episodes: int | None = None, state_example: Any = None) -> Buffer:
    """Tape-based batching: a ring of `capacity` rows of obs [obs_dim] whose sample(state, key)
    is a Tape of `tape_size` rows of whole episodes, [tape_size] or [lanes, tape_size // lanes]
    (see _sample_tape). max_episodes: most episodes tried per tape (None: tape_size // 2).
    state_example: one unbatched memory state to store per row, or None. Raises ValueError,
    naming the argument, on a bad size."""
    tape_size = _int("tape_size", tape_size, 2, " rows (an episode has at least 2)")
    lanes = _int("lanes", lanes, 1)
    if tape_size % lanes:
        raise ValueError(f"lanes must divide tape_size {tape_size}, got {lanes}")
    if tape_size // lanes < 2:
        raise ValueError(f"lanes: {lanes} lanes of tape_size {tape_size} leave under 2 rows per lane (an episode has at least 2)")
    if max_episodes is not None:
        max_episodes = _int("max_episodes", max_episodes, 1)
    sizes = TapeSizes(tape_size=tape_size, lanes=lanes, max_episodes=max_episodes)
    sample = functools.partial(_sample_tape, tape_size=tape_size, max_episodes=max_episodes, lanes=lanes)
    return _buffer(capacity, obs_dim, state_example, sample, sizes)


def make_segment_buffer(capacity: int, obs_dim: int, batch_size: int, length: int, burn_in: int = 0,
                        stride: int | None = None, stored_state: bool = False,
                        state_example: Any = None) -> Buffer:
    """Segment-based batching (DRQN, or R2D2 with a stored state and burn-in): a ring of `capacity`
    rows of obs [obs_dim] whose sample(state, key) is Segments of `batch_size` windows of
    burn_in + length + 1 rows (see _sample_segments). stride: segment starts every stride
    transitions of an episode (None: length). stored_state: hand out the memory state stored
    per row, which needs `state_example` (one unbatched memory state). Raises ValueError, naming
    the argument, on a bad size."""
    batch_size = _int("batch_size", batch_size, 1)
    length = _int("length", length, 1)
    burn_in = _int("burn_in", burn_in, 0)
    if stride is not None:
        stride = _int("stride", stride, 1)
    if stored_state and state_example is None:
        raise ValueError("stored_state needs a state_example (the memory state to store per row)")
    sizes = SegmentSizes(batch_size=batch_size, length=length, burn_in=burn_in, stride=stride,
                         stored_state=bool(stored_state))
    sample = functools.partial(_sample_segments, batch_size=batch_size, length=length, burn_in=burn_in,
                               stride=stride, stored_state=bool(stored_state))
    return _buffer(capacity, obs_dim, state_example, sample, sizes)
