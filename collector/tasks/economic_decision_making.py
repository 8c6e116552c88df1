"""EconomicDecisionMaking-v0 (neurogym 2.3.1, envs/native/economicdecisionmaking.py).

Two offers of two juices are shown; in `decision` the subject picks one (action 1: offer 1,
action 2: offer 2) and gets its value: n_A * R_A for juice A, n_B * R_B for juice B, with
R_A = rewards["correct"] (0.22) and R_B = R_A / 2.2 (one unit of A is worth 2.2 units of B).

obs = [fixation, a1, b1, a2, b2, n1, n2]: the fixation cue in `fixation` and `offer_on`; in
`offer_on` the juice channel of each offer (a1 or b1 for offer 1, a2 or b2 for offer 2) and each
offer's amount / 5 (n1, n2). `decision` shows zeros. No noise (neurogym's task has no `sigma`).
Timing: fixation 1500 ms, offer_on uniform on [1000, 2000) ms (neurogym's lambda), decision 750 ms.

trial = {juice: 0 for neurogym's ("a", "b") (offer 1 is juice A), 1 for ("b", "a"); offer:
int32[2] = neurogym's (n_b, n_a)}, each drawn uniformly from neurogym's 2 juice orders and 9 offers.
`new_trial(juice=..., offer=...)` takes neurogym's values (the juice tuple of strings, converted
while tracing) or the numbers above.

Rules, as neurogym's _step (and its quirks):
- in `fixation` and `offer_on` any non-zero action costs `abort` and the trial goes on (neurogym's
  abort is False);
- in `decision` action 1 or 2 ends the trial with the chosen offer's value as reward; performance is
  1 when that value is the larger one (the 9 offers never tie, so a scripted policy reaches 1.0);
- a trial without a choice times out with reward 0 (no r_tmax) and performance 0;
- info["gt"] is 0 on every step: neurogym's _step reports gt = 0 and the task builds no ground
  truth. `gt_now` (which neurogym's task lacks) names the better offer in `decision`, 0 elsewhere:
  following it is the scripted policy.
Keyword arguments: dt, rewards (abort, correct), timing.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import (
    _F32,
    _I32,
    EnvParams,
    EnvState,
    TrialTask,
    _pick,
    _take,
    _uniforms_and_normals,
    period_index,
)

B_TO_A = 1 / 2.2  # neurogym's self.B_to_A
# neurogym's self.offers, (n_b, n_a)
OFFERS = np.asarray([(0, 1), (1, 3), (1, 2), (1, 1), (2, 1), (3, 1), (4, 1), (6, 1), (2, 0)], np.int32)
JUICES = {("a", "b"): 0, ("b", "a"): 1}


@dataclasses.dataclass(frozen=True)
class EconomicDecisionMaking(TrialTask):
    name: ClassVar[str] = "EconomicDecisionMaking-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "offer_on", "decision")
    default_timing: ClassVar[dict] = {"fixation": 1500, "offer_on": ("uniform", (1000, 2000)), "decision": 750}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 0.22}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing")
    trial_keys: ClassVar[tuple[str, ...]] = ("juice", "offer")
    n_trial_u: ClassVar[int] = 2
    obs_dim: ClassVar[int] = 7
    num_actions: ClassVar[int] = 3

    def sample_trial(self, u, params):
        idx = _pick(u[1], jnp.arange(len(OFFERS), dtype=_I32))
        offer = jnp.stack([_take(jnp.asarray(OFFERS[:, 0]), idx), _take(jnp.asarray(OFFERS[:, 1]), idx)])
        return {"juice": _pick(u[0], jnp.asarray([0, 1], _I32)), "offer": offer}

    def forced_value(self, key, value, like):
        if key == "juice" and isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
            if tuple(value) not in JUICES:
                raise ValueError(f"{self.name}: juice must be ('a', 'b') or ('b', 'a'), got {value!r}")
            value = JUICES[tuple(value)]
        return jnp.broadcast_to(jnp.asarray(value, like.dtype), like.shape)

    def values(self, trial: dict, params: EnvParams):
        """(value of offer 1, value of offer 2), float32 scalars (neurogym's r1, r2)."""
        r_a = trial["offer"][1].astype(_F32) * params.rewards["correct"]
        r_b = trial["offer"][0].astype(_F32) * (params.rewards["correct"] * np.float32(B_TO_A))
        a_first = trial["juice"] == 0
        return jnp.where(a_first, r_a, r_b), jnp.where(a_first, r_b, r_a)

    def best_choice(self, trial: dict, params: EnvParams):
        """The action of the more valuable offer (1 or 2): the scripted policy's choice."""
        r1, r2 = self.values(trial, params)
        return jnp.where(r1 > r2, 1, 2).astype(_I32)

    def observations(self, trial, params, steps):
        a_first = (trial["juice"] == 0).astype(_F32)
        n_b, n_a = trial["offer"][0].astype(_F32), trial["offer"][1].astype(_F32)
        n1 = jnp.where(trial["juice"] == 0, n_a, n_b)
        n2 = jnp.where(trial["juice"] == 0, n_b, n_a)
        one = jnp.float32(1)
        offer = jnp.stack([one, a_first, 1 - a_first, 1 - a_first, a_first, n1 / 5.0, n2 / 5.0])
        fix = jnp.asarray([1.0, 0, 0, 0, 0, 0, 0], _F32)
        #                       fixation offer_on decision
        return trial, jnp.stack([fix, offer, jnp.zeros(7, _F32)])

    def gt_now(self, state: EnvState, params: EnvParams | None = None):
        """The better offer's action in `decision`, else 0 (neurogym's task has no gt_now; what it
        reports as info["gt"] is 0 on every step, and so does this port's step)."""
        in_dec = period_index(state) == self.periods.index("decision")
        return jnp.where(in_dec, self.best_choice(state.trial, params), 0).astype(_I32)

    def step(self, key, state: EnvState, action, params: EnvParams):
        # the abort rule spans two periods and the reward is the chosen offer's value: not the
        # base's abort/decision pattern
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        moved = action != 0
        chose = moved & (period_index(state) == self.periods.index("decision"))
        r1, r2 = self.values(state.trial, params)
        reward = jnp.where(chose, jnp.where(action == 1, r1, r2),
                           jnp.where(moved, params.rewards["abort"], 0.0)).astype(_F32)
        correct = chose & jnp.where(action == 1, r1 > r2, r2 > r1)
        timeout = state.t + 1 >= state.ends[-1]
        return self._advance(u, z, state, params, chose | timeout, reward, jnp.zeros((), _I32), correct)
