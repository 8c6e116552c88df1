"""Timing specs of NeuroGym periods: parsed once at make time (Python), sampled per trial (JAX).

`_parse_timing(where, spec, dt)` accepts what neurogym's `TrialEnv.sample_time` accepts for a
period: a number of ms, a list/tuple of numbers (uniform choice), `("constant", v)`,
`("choice", [...])`, `("uniform", (lo, hi))`, `("truncated_exponential", (mean, vmin, vmax))` or an
`ngym_random.TruncExp` instance; anything else (`"until"`, arbitrary callables) raises ValueError
naming the period. `_sample_steps(pt, u, dt)` turns one uniform into the period's number of steps,
floor(duration / dt) as neurogym does (`_steps` for a fixed number of ms).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

_F32 = jnp.float32
_I32 = jnp.int32
_BIG_STEPS = 2**30


@struct.dataclass
class PeriodTiming:
    """How the number of steps of one period is drawn each trial.

    kind (static): "constant" (values[0]), "table" (values[i] with cumulative probabilities cdf),
    "uniform" (floor((lo + u * width) / dt)) or "trunc_exp" (floor(x / dt) with x exponential of
    `mean`, truncated to [lo, lo + width): x = lo - mean * log1p(-u * mass)). Steps are clipped to
    [min_steps, max_steps], the support of the exact law; for every kind, min_steps and
    max_steps bound the period's possible lengths (max_steps = 2**30 when unbounded).
    """

    kind: str = struct.field(pytree_node=False)
    values: jax.Array  # int32[K]
    cdf: jax.Array  # float32[K]
    lo: jax.Array  # float32, ms
    width: jax.Array  # float32, ms
    mean: jax.Array  # float32, ms
    mass: jax.Array  # float32, 1 - exp(-width / mean)
    min_steps: jax.Array  # int32
    max_steps: jax.Array  # int32



# --------------------------------------------------------------------------------------------
# Parsing (Python side, at make time) and sampling (JAX)
# --------------------------------------------------------------------------------------------
def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _steps(ms: float, dt: float) -> int:
    # neurogym: (t // dt) * dt, then start/end indices int(t / dt)
    return int(round(((ms // dt) * dt) / dt))


def _timing(kind, *, values=(0,), probs=None, lo=0.0, width=0.0, mean=1.0, mass=0.0,
            min_steps=0, max_steps=_BIG_STEPS) -> PeriodTiming:
    values = np.asarray(values, np.int32)
    if kind in ("constant", "table"):
        min_steps, max_steps = int(values.min()), int(values.max())
    cdf = np.cumsum(probs if probs is not None else np.ones(len(values)) / len(values))
    cdf[-1] = 1.0
    return PeriodTiming(
        kind=kind,
        values=jnp.asarray(values, _I32),
        cdf=jnp.asarray(cdf, _F32),
        lo=jnp.asarray(lo, _F32),
        width=jnp.asarray(width, _F32),
        mean=jnp.asarray(mean, _F32),
        mass=jnp.asarray(mass, _F32),
        min_steps=jnp.asarray(min_steps, _I32),
        max_steps=jnp.asarray(min(max_steps, _BIG_STEPS), _I32),
    )


def _choice_timing(vals, dt, where) -> PeriodTiming:
    vals = list(vals)
    if not vals or not all(_is_number(v) for v in vals):
        raise ValueError(f"timing[{where!r}]: a choice needs a non-empty list of numbers, got {vals!r}")
    steps = [_steps(float(v), dt) for v in vals]
    uniq, counts = np.unique(steps, return_counts=True)
    if len(uniq) == 1:
        return _timing("constant", values=uniq)
    return _timing("table", values=uniq, probs=counts / counts.sum())


def _trunc_exp_timing(vmean, vmin=0.0, vmax=math.inf, *, dt, where) -> PeriodTiming:
    vmean, vmin, vmax = float(vmean), float(vmin), float(vmax)
    if vmin >= vmax:  # neurogym returns vmax
        return _timing("constant", values=[_steps(vmax, dt)])
    if vmean <= 0:
        raise ValueError(f"timing[{where!r}]: truncated exponential mean must be > 0, got {vmean}")
    width = vmax - vmin
    mass = -math.expm1(-width / vmean) if math.isfinite(width) else 1.0
    max_steps = math.ceil(vmax / dt) - 1 if math.isfinite(vmax) else _BIG_STEPS
    return _timing("trunc_exp", lo=vmin, width=width if math.isfinite(width) else 0.0, mean=vmean,
                   mass=mass, min_steps=_steps(vmin, dt), max_steps=max_steps)


def _parse_timing(where: str, spec: Any, dt: float) -> PeriodTiming:
    """One period's timing spec, as neurogym's TrialEnv.sample_time accepts it."""
    if _is_number(spec):
        if spec < 0:
            raise ValueError(f"timing[{where!r}]: negative duration {spec}")
        return _timing("constant", values=[_steps(float(spec), dt)])
    if callable(spec):
        if all(hasattr(spec, a) for a in ("vmean", "vmin", "vmax")):  # ngym_random.TruncExp
            return _trunc_exp_timing(spec.vmean, spec.vmin, spec.vmax, dt=dt, where=where)
        raise ValueError(f"timing[{where!r}]: unsupported callable {spec!r} (only TruncExp)")
    if isinstance(spec, list | tuple | np.ndarray) and len(spec) > 0:
        if _is_number(spec[0]):
            return _choice_timing(spec, dt, where)
        if len(spec) == 2 and isinstance(spec[0], str):
            dist, args = spec
            if dist == "constant":
                return _parse_timing(where, args, dt)
            if dist == "choice":
                return _choice_timing(args, dt, where)
            if dist == "uniform":
                lo, hi = (float(a) for a in args)
                if not hi > lo:
                    return _timing("constant", values=[_steps(lo, dt)])
                return _timing("uniform", lo=lo, width=hi - lo, min_steps=_steps(lo, dt),
                               max_steps=math.ceil(hi / dt) - 1)
            if dist == "truncated_exponential":
                return _trunc_exp_timing(*args, dt=dt, where=where)
            raise ValueError(f"timing[{where!r}]: unsupported distribution {dist!r}")
    raise ValueError(f"timing[{where!r}]: unsupported timing spec {spec!r}")


def _sample_steps(pt: PeriodTiming, u: jax.Array, dt: jax.Array) -> jax.Array:
    if pt.kind == "constant":
        return pt.values[0]
    if pt.kind == "table":
        return _take(pt.values, jnp.sum(u >= pt.cdf[:-1]).astype(_I32))
    if pt.kind == "uniform":
        x = pt.lo + u * pt.width
    else:  # trunc_exp
        x = pt.lo - pt.mean * jnp.log1p(-u * pt.mass)
    return jnp.clip(jnp.floor(x / dt).astype(_I32), pt.min_steps, pt.max_steps)


def _take(options: jax.Array, idx: jax.Array) -> jax.Array:
    """options[idx] for a short static-length vector, as a one-hot sum (faster than a gather
    once vmapped on CPU)."""
    hit = jnp.arange(options.shape[0], dtype=_I32) == idx
    return jnp.sum(jnp.where(hit, options, jnp.zeros((), options.dtype)))
