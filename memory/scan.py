"""Resettable associative scans shared by every monoid memory.

A tape holds many episodes back to back, with a start flag on the first step of each.
Any memory whose state update is an associative operator `op` (a monoid) can run over the
whole tape in O(log T) depth with `jax.lax.associative_scan`, provided the operator is
wrapped so that a start flag cuts the history:

    (r1, e1) • (r2, e2) = (r1 ∨ r2,  r2 ? e2 : op(e1, e2))

The cut is a `jnp.where`, so the gradient of a step with respect to anything before the
last start flag is exactly zero, not merely small.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

Elems = Any  # a pytree of arrays whose leaves share a leading time axis [T, ...]
Op = Callable[[Elems, Elems], Elems]


def _select(flag: jax.Array, on_true: jax.Array, on_false: jax.Array) -> jax.Array:
    """`where(flag, on_true, on_false)` with flag [K] broadcast over the leaves' trailing axes."""
    flag = flag.reshape(flag.shape + (1,) * (on_true.ndim - flag.ndim))
    return jnp.where(flag, on_true, on_false)


def resettable(op: Op) -> Callable:
    """Wrap a monoid operator `op(e1, e2)` so that a set flag on the right operand cuts history.

    The wrapped operator acts on pairs (r, e), r: [K] bool and e: an element pytree with
    leading axis K (as `jax.lax.associative_scan` calls it).
    """

    def wrapped(left, right):
        r1, e1 = left
        r2, e2 = right
        combined = op(e1, e2)
        e = jax.tree.map(lambda new, old: _select(r2, new, old), e2, combined)
        return r1 | r2, e

    return wrapped


def reset_scan(op: Op, elems: Elems, start: jax.Array, initial: Elems | None = None) -> Elems:
    """Inclusive scan of `op` over the time axis, restarting wherever `start` is set.

    Args:
      op: associative operator on element pytrees with a leading axis (see `resettable`).
      elems: element pytree, every leaf [T, ...].
      start: [T] bool; a set flag discards everything before that step.
      initial: optional element pytree with leaves [1, ...], the history before step 0
        (e.g. the carried state when acting one step at a time). It is folded into step 0
        unless start[0] is set.

    Returns:
      The inclusive prefix combinations, same structure and shapes as `elems`.
    """
    start = jnp.asarray(start, bool)
    if initial is not None:
        # Folding the initial element into step 0 and marking step 0 as a cut makes every
        # prefix begin from a known state, so no element has to be prepended to the tape.
        first = jax.tree.map(lambda e: e[:1], elems)
        folded = jax.tree.map(lambda f, m: _select(start[:1], f, m), first, op(initial, first))
        elems = jax.tree.map(lambda e, f: e.at[:1].set(f), elems, folded)
        start = start.at[0].set(True)
    _, out = jax.lax.associative_scan(resettable(op), (start, elems))
    return out


def linear_op(left, right):
    """The linear (Hebbian) monoid: (a1, U1) • (a2, U2) = (a1·a2, a2·U1 + U2).

    It composes the affine maps M -> a·M + U; `a` must broadcast against `U` from the left
    (e.g. a [K, 1] with U [K, N], or a [K, 1, 1] with U [K, N, P]).
    """
    a1, u1 = left
    a2, u2 = right
    return a1 * a2, a2 * u1 + u2


def reset_linear_scan(a: jax.Array, u: jax.Array, start: jax.Array,
                      initial: jax.Array | None = None) -> jax.Array:
    """All states of M_t = a_t M_{t-1} + U_t, with M_{t-1} := 0 wherever start[t] is set.

    Args:
      a: decay, [T] or [T, 1, ...] (trailing axes of size 1 or matching U).
      u: input term U_t, [T, ...].
      start: [T] bool episode-start flags.
      initial: optional M_{-1}, shape u.shape[1:]; zeros when None.

    Returns:
      [T, ...] the inclusive values M_0 .. M_{T-1}.
    """
    a = a.reshape(a.shape + (1,) * (u.ndim - a.ndim))
    init = None
    if initial is not None:
        # As an element, the state M is the constant map (a=1, U=M) applied to zero.
        init = (jnp.ones_like(a[:1]), jnp.asarray(initial, u.dtype)[None])
    _, states = reset_scan(linear_op, (a, u), start, init)
    return states
