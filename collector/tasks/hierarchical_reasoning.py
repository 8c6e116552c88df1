"""HierarchicalReasoning-v0 (neurogym 2.3.1, envs/native/hierarchicalreasoning.py).

Two flashes at one of two locations are separated by a delay; the subject reports "same side" or
"opposite side" depending on whether the interval is long and on the rule of the current block.
The rule alternates between blocks of 10..20 trials (uniform), unannounced.

On the declarative base for periods, timing and observations, with its own state and step: the
block (rule, trials so far, block size) and neurogym's `chose_correct_rule` flag are carried across
trials in the state (`HierarchicalReasoningState.block`), and the response rules (a rule-target
choice that is remembered, no abort in `rule_target`) are not the base's abort/decision pattern.

periods: fixation (neurogym's TruncExp(600, 400, 800)), rule_target (1000), fixation2 (TruncExp(600,
400, 900)), flash1 (100), delay (a choice among 530, 610, ..., 1170 ms), flash2 (100), decision (700).
obs = [fixation, rule 1, rule 2, stimulus 1, stimulus 2]: the fixation cue in every period but
`decision`; BOTH rule channels are on in `rule_target` (neurogym's add_ob(1, where="rule") sets
the two), so the rule is never shown; the stimulus channel of the trial's side in flash1 and
flash2. No noise (neurogym's task has no `sigma`).
Ground truth: 1 + rule in `rule_target`, 3 + choice in `decision`, 0 elsewhere.

Rules, as neurogym's _step: in `decision` the first non-zero action ends the trial with `correct`
(performance 1) if it equals the ground truth AND the last action taken in `rule_target` equalled
that period's ground truth, else `fail`; in `rule_target` actions are free (each one overwrites
the remembered rule choice); elsewhere a non-zero action costs `abort` and the trial goes on
(neurogym's abort is False). A trial that times out gets nothing (no r_tmax) and keeps the
remembered rule choice for the next trial (neurogym clears it only when an action ends the trial).

Trial and block, as neurogym's _new_trial (its quirks included):
- interval = a draw from the delay's timing (floored to dt), and the `delay` period's length is
  ANOTHER independent draw from the same timing (neurogym samples "delay" twice): the interval that
  sets the answer is not the delay shown;
- long_interval = interval > mid_delay + (U - 0.5), with mid_delay = np.median(timing["delay"][1]):
  610 ms at the defaults (the second listed value, not the median of the list);
- rule = the block's rule; pro_choice = (long_interval == rule); choice = stimulus if pro_choice
  else 1 - stimulus (stimulus uniform in {0, 1});
- then the block advances: after `block_size` trials the rule flips and a new size is drawn from
  10..20. A fresh env starts with rule 1 and a drawn size (neurogym's constructor).
trial = {interval (ms), rule, stimulus, long_interval, pro_choice, choice}. new_trial may force
interval, rule and stimulus as neurogym does: a forced interval is only recorded (neurogym computes
long_interval from its own draw), a forced rule applies to that trial only (the block goes on).
The port also accepts `long_interval` (neurogym ignores it), so tests can replay a neurogym trial.

What an agent can reach: the rule is never shown and long_interval does not depend on the delay
shown, so observations say nothing about either: a policy that sees observations only gets the
rule target right half the time in the long run and the choice right 2/3 of the time (P(long) =
6/9 at dt = 100), i.e. 1/3 per trial, plus what the known start (rule 1 for 10..20 trials) gives;
the task table has no ceiling or target for that reason. Random policy: 1/5 (rule target) * 1/4
(choice) * (1 - 5^-7) = 0.05.
Keyword arguments: dt, rewards (abort, correct, fail), timing.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collector.tasks.base import (
    _F32,
    _I32,
    EnvParams,
    EnvState,
    TrialTask,
    _sample_steps,
    _uniforms_and_normals,
    period_index,
)


@struct.dataclass
class HierarchicalReasoningState(EnvState):
    """EnvState plus what neurogym carries across trials."""

    block: dict  # rule (int32), in_block (int32, trials of the block so far), size (int32),
    #              chose_rule (bool: the last rule_target action was right; neurogym's chose_correct_rule)


@dataclasses.dataclass(frozen=True)
class HierarchicalReasoning(TrialTask):
    name: ClassVar[str] = "HierarchicalReasoning-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "rule_target", "fixation2", "flash1", "delay", "flash2",
                                          "decision")
    default_timing: ClassVar[dict] = {
        "fixation": ("truncated_exponential", (600, 400, 800)), "rule_target": 1000, "fixation2": ("truncated_exponential", (600, 400, 900)),
        "flash1": 100, "delay": (530, 610, 690, 770, 850, 930, 1010, 1090, 1170), "flash2": 100, "decision": 700}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing")
    trial_keys: ClassVar[tuple[str, ...]] = ("interval", "rule", "stimulus", "long_interval")
    # the interval draw, the stimulus, the tie-break U, the next block's size, a fresh env's first size
    n_trial_u: ClassVar[int] = 5
    obs_dim: ClassVar[int] = 5
    num_actions: ClassVar[int] = 5
    abort_period: ClassVar[None] = None  # own step (see the module docstring)

    def params_extra(self, kw):
        spec = {**self.default_timing, **(kw.get("timing") or {})}["delay"]
        try:  # neurogym's self.mid_delay = np.median(self.timing["delay"][1])
            mid = float(np.median(spec[1]))
        except (TypeError, IndexError, KeyError, ValueError):
            raise ValueError(f"{self.name}: timing['delay'] must be indexable (neurogym takes the median of "
                             f"its second entry as the long/short threshold), got {spec!r}") from None
        return {"mid_delay": np.float32(mid)}

    # --- trials ---------------------------------------------------------------------------------
    def _fresh_block(self, u) -> dict:
        """neurogym's constructor: rule 0 then new_block(): rule 1, a size in 10..20."""
        return {"rule": jnp.ones((), _I32), "in_block": jnp.zeros((), _I32), "size": _block_size(u),
                "chose_rule": jnp.zeros((), bool)}

    def _sample_trial(self, u, params: EnvParams, num_tr, forced=None, durations=None, block=None):
        n = self.n_trial_u
        if block is None:
            block = self._fresh_block(u[4])
        forced = dict(forced or {})
        interval = _sample_steps(params.timing[self.periods.index("delay")], u[0], params.dt).astype(_F32) * params.dt
        trial = {"interval": interval, "rule": block["rule"], "stimulus": jnp.minimum((u[1] * 2).astype(_I32), 1)}
        long_interval = interval > params.extra["mid_delay"] + (u[2] - 0.5)  # from the draw, never a forced interval
        for k in ("interval", "rule", "stimulus"):
            if k in forced:
                trial[k] = jnp.asarray(forced[k], trial[k].dtype)
        if "long_interval" in forced:
            long_interval = jnp.asarray(forced["long_interval"], bool)
        pro = long_interval.astype(_I32) == trial["rule"]
        trial.update(long_interval=long_interval, pro_choice=pro,
                     choice=jnp.where(pro, trial["stimulus"], 1 - trial["stimulus"]).astype(_I32))
        # the block advances at every new trial (a forced rule does not change it)
        in_block = block["in_block"] + 1
        turn = in_block >= block["size"]
        block = {"rule": jnp.where(turn, 1 - block["rule"], block["rule"]).astype(_I32),
                 "in_block": jnp.where(turn, 0, in_block).astype(_I32),
                 "size": jnp.where(turn, _block_size(u[3]), block["size"]).astype(_I32),
                 "chose_rule": block["chose_rule"]}
        steps = []
        for i, (name, pt) in enumerate(zip(self.periods, params.timing)):
            if durations is not None and name in durations:
                steps.append(jnp.asarray(durations[name], _I32))
            else:
                steps.append(_sample_steps(pt, u[n + i], params.dt))
        steps = jnp.stack(steps)
        trial, stim = self._complete_trial(trial, params, steps)
        return HierarchicalReasoningState(t=jnp.zeros((), _I32), ends=jnp.cumsum(steps).astype(_I32),
                                          num_tr=jnp.asarray(num_tr, _I32), trial=trial, stim=stim, block=block)

    def observations(self, trial, params, steps):
        s = trial["stimulus"].astype(_F32)
        fix = jnp.asarray([1.0, 0, 0, 0, 0], _F32)
        rule = jnp.asarray([1.0, 1, 1, 0, 0], _F32)
        flash = jnp.stack([jnp.float32(1), jnp.float32(0), jnp.float32(0), 1 - s, s])
        #                       fixation rule_target fixation2 flash1 delay flash2 decision
        return trial, jnp.stack([fix, rule, fix, flash, fix, flash, jnp.zeros(5, _F32)])

    def gt_now(self, state, params=None):
        p = period_index(state)
        return jnp.where(p == 1, 1 + state.trial["rule"],
                         jnp.where(p == 6, 3 + state.trial["choice"], 0)).astype(_I32)

    # --- public API -----------------------------------------------------------------------------
    def new_trial(self, key, params, durations=None, num_tr=1, **forced):
        """Step 0 of the first trial of a fresh env (rule 1, a drawn block size); `forced` as
        neurogym's names (plus long_interval, see the module docstring), durations in steps."""
        for k in forced:
            if k not in self.trial_keys:
                raise ValueError(f"{self.name}: unknown trial parameter {k!r} (known: {', '.join(self.trial_keys)})")
        for k in durations or {}:
            if k not in self.periods:
                raise ValueError(f"{self.name}: unknown period {k!r}")
        return self._sample_trial(jax.random.uniform(key, (self._n_u,), _F32), params, num_tr, forced, durations)

    def step(self, key, state, action, params):
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        p = period_index(state)
        gt = self.gt_now(state, params)
        moved = action != 0
        in_rule, in_dec = p == 1, p == 6
        chose_rule = jnp.where(in_rule, action == gt, state.block["chose_rule"])
        answered = in_dec & moved
        correct = answered & (action == gt) & chose_rule
        reward = jnp.where(answered, jnp.where(correct, params.rewards["correct"], params.rewards["fail"]),
                           jnp.where(moved & ~in_rule & ~in_dec, params.rewards["abort"], 0.0)).astype(_F32)
        block = {**state.block, "chose_rule": chose_rule & ~answered}  # cleared when an action ends the trial
        new_trial = answered | (state.t + 1 >= state.ends[-1])
        fresh = self._sample_trial(u, params, state.num_tr + 1, block=block)
        cont = state.replace(t=state.t + 1, block=block)
        next_state = jax.tree.map(lambda a, b: jnp.where(new_trial, a, b), fresh, cont)
        obs = self.get_obs(next_state, params, z)
        info = {"new_trial": new_trial, "gt": gt, "performance": correct.astype(_F32), "trial_step": state.t,
                "trial_params": state.trial}
        return obs, next_state, reward, jnp.zeros((), bool), info


def _block_size(u) -> jax.Array:
    """neurogym's rng.randint(10, 20 + 1) from one uniform."""
    return (10 + jnp.minimum((u * 11).astype(_I32), 10)).astype(_I32)
