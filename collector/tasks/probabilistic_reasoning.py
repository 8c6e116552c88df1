"""ProbabilisticReasoning-v0 (neurogym 2.3.1, envs/native/probabilisticreasoning.py).

n_loc shapes (of n_shape = len(shape_weight)) appear one per period at n_loc distinct locations
and stay on screen; their weights sum to a log10-odds that the answer is choice 2 rather than
choice 1; after a delay the subject chooses (action 1 or 2).

obs = [fixation, loc0 (n_shape channels), ..., loc{n_loc-1}]: the fixation cue in every period but
`decision`; in `stimulus{k}` the one-hot shapes of items 0..k, each in its location's block
(`delay` shows only the fixation cue, as in neurogym). No noise (neurogym's task has no `sigma`).
Timing: fixation 500 ms, stimulus0..stimulus{n_loc-1} 500 ms each, delay uniform on [450, 550) ms,
decision 500 ms.

trial = {locs: int32[n_loc] (a random permutation of the locations), shapes: int32[n_loc] (drawn
with replacement), log_odd = sum of shape_weight[shapes], ground_truth = 1 with probability
p = 1 / (10^-log_odd + 1), else 0, gt_draw: the uniform that drew it}. Neurogym overwrites a forced
ground_truth with its own draw, so only locs and shapes can be forced (as in neurogym); the ground
truth stays random unless |log_odd| is large (a shape of weight +-10).
Correct action in `decision` = ground_truth + 1 (`fail` = 0 otherwise); a non-zero action in any
other period costs `abort` and the trial goes on (neurogym's abort is False); no r_tmax.
The best policy chooses the likelier side from the shapes: its performance is
E[max(p, 1 - p)] over the shapes (0.915 at the defaults), not 1.
Keyword arguments: dt, rewards, timing, shape_weight, n_loc.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32, _I32, TrialTask, check_numbers

SHAPE_WEIGHT = (-10, -0.9, -0.7, -0.5, -0.3, 0.3, 0.5, 0.7, 0.9, 10)  # neurogym's default
_NOT_DECISION = "<every period but decision>"  # neurogym's abort rule: `elif action != 0`


@dataclasses.dataclass(frozen=True)
class ProbabilisticReasoning(TrialTask):
    n_loc: int = 4
    n_shape: int = len(SHAPE_WEIGHT)

    name: ClassVar[str] = "ProbabilisticReasoning-v0"
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "shape_weight", "n_loc")
    trial_keys: ClassVar[tuple[str, ...]] = ("locs", "shapes")
    abort_period: ClassVar[str] = _NOT_DECISION

    # --- shapes that depend on n_loc / n_shape ------------------------------------------------
    @property
    def periods(self) -> tuple[str, ...]:
        return ("fixation", *(f"stimulus{i}" for i in range(self.n_loc)), "delay", "decision")

    @property
    def default_timing(self) -> dict:
        return {"fixation": 500, **{f"stimulus{i}": 500 for i in range(self.n_loc)},
                "delay": ("uniform", (450, 550)), "decision": 500}

    @property
    def obs_dim(self) -> int:
        return 1 + self.n_shape * self.n_loc

    @property
    def num_actions(self) -> int:
        return 3

    @property
    def n_trial_u(self) -> int:
        return 2 * self.n_loc + 1  # locations (a permutation), shapes, the ground-truth draw

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def make(cls, **kw):
        n_loc = kw.pop("n_loc", 4)
        if not isinstance(n_loc, numbers.Integral) or isinstance(n_loc, bool) or n_loc < 1:
            raise ValueError(f"{cls.name}: n_loc must be a positive int, got {n_loc!r}")
        weights = kw.pop("shape_weight", None)
        weights = SHAPE_WEIGHT if weights is None else check_numbers(cls.name, "shape_weight", weights)
        env = cls(n_loc=int(n_loc), n_shape=len(weights))
        return env, env._make_params(extra={"shape_weight": np.asarray(weights, np.float32)}, **kw)

    # --- the trial ----------------------------------------------------------------------------
    def _period_is(self, p, period):
        if period == _NOT_DECISION:
            return p != self.periods.index("decision")
        return super()._period_is(p, period)

    def sample_trial(self, u, params):
        n = self.n_loc
        locs = jnp.argsort(u[:n]).astype(_I32)  # a uniform random permutation
        shapes = jnp.minimum((u[n:2 * n] * self.n_shape).astype(_I32), self.n_shape - 1)
        return {"locs": locs, "shapes": shapes, "gt_draw": u[2 * n]}

    def forced_value(self, key, value, like):
        return jnp.broadcast_to(jnp.asarray(value, like.dtype), like.shape)

    def observations(self, trial, params, steps):
        n, s = self.n_loc, self.n_shape
        shape_hot = (trial["shapes"][:, None] == jnp.arange(s)).astype(_F32)  # [item, shape]
        loc_hot = (trial["locs"][:, None] == jnp.arange(n)).astype(_F32)  # [item, loc]
        shown = jnp.cumsum(loc_hot[:, :, None] * shape_hot[:, None, :], axis=0).reshape(n, n * s)
        log_odd = jnp.sum(shape_hot @ params.extra["shape_weight"])
        p = 1.0 / (jnp.power(jnp.float32(10), -log_odd) + 1.0)
        trial = {**trial, "log_odd": log_odd, "ground_truth": (trial["gt_draw"] < p).astype(_I32)}
        fix = jnp.zeros((1, 1 + n * s), _F32).at[0, 0].set(1.0)
        stim = jnp.concatenate([jnp.ones((n, 1), _F32), shown], axis=1)
        #                        fixation stimulus0..  delay  decision
        return trial, jnp.concatenate([fix, stim, fix, jnp.zeros_like(fix)], axis=0)

    def gt_action(self, trial):
        return trial["ground_truth"] + 1


def ideal_choice(trial: dict) -> jax.Array:
    """The likelier side given the shapes (the ideal observer's choice): 2 if log_odd > 0, else 1."""
    return jnp.where(trial["log_odd"] > 0, 2, 1).astype(_I32)

