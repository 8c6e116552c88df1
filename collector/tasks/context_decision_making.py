"""ContextDecisionMaking-v0 (neurogym 2.3.1, envs/native/contextdecisionmaking.py).

obs = [fixation, mod1_1..mod1_R, mod2_1..mod2_R(, context1, context2 if explicit)]; trial =
{ground_truth in 1..R, other_choice, context, coh_1, coh_2}; the context-relevant modality shows
ground_truth with coh_1 (modality 1 when context 0); correct action = ground_truth. Implicit context
by default (`impl_context_modality` picks it); `use_expl_context=True` draws it per trial and shows
it. Keyword arguments: dt, sigma, timing, rewards (no `fail`: neurogym's task has none), dim_ring,
abort, use_expl_context, impl_context_modality.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from collector.tasks.base import _F32, _I32, TrialTask, _pick, _take, check_dim_ring


@dataclasses.dataclass(frozen=True)
class ContextDecisionMaking(TrialTask):
    """obs = [fixation, mod1_1..mod1_R, mod2_1..mod2_R(, context1, context2 if explicit)];
    trial = {ground_truth in 1..R, other_choice, context, coh_1, coh_2}; correct action =
    ground_truth."""

    dim_ring: int = 2
    use_expl_context: bool = False

    name: ClassVar[str] = "ContextDecisionMaking-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "delay", "decision")
    default_timing: ClassVar[dict] = {"fixation": 300, "stimulus": 750,
                                      "delay": ("truncated_exponential", (600, 300, 3000)),
                                      "decision": 100}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "sigma", "timing", "rewards", "dim_ring", "abort",
                                         "use_expl_context", "impl_context_modality")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "other_choice", "context", "coh_1", "coh_2")
    n_trial_u: ClassVar[int] = 5
    noise: ClassVar[dict] = {"stimulus": "both modalities"}

    @property
    def num_actions(self) -> int:
        return 1 + self.dim_ring

    @property
    def obs_dim(self) -> int:
        return 1 + 2 * self.dim_ring + (2 if self.use_expl_context else 0)

    @property
    def noise_dim(self) -> int:
        return 2 * self.dim_ring

    def sample_trial(self, u, params):
        choices = jnp.arange(1, self.dim_ring + 1, dtype=_I32)
        return {"ground_truth": _pick(u[0], choices), "other_choice": _pick(u[1], choices),
                "context": _pick(u[2], params.contexts), "coh_1": _pick(u[3], params.cohs),
                "coh_2": _pick(u[4], params.cohs)}

    def _complete_trial(self, trial, params, steps):
        theta = jnp.asarray(self._theta(), _F32)
        swap = trial["context"] == 1
        c1 = jnp.where(swap, trial["other_choice"], trial["ground_truth"])
        c2 = jnp.where(swap, trial["ground_truth"], trial["other_choice"])
        m1 = jnp.cos(theta - _take(theta, c1 - 1)) * (trial["coh_1"] / 200) + 0.5
        m2 = jnp.cos(theta - _take(theta, c2 - 1)) * (trial["coh_2"] / 200) + 0.5
        return trial, jnp.concatenate([m1, m2]).astype(_F32)

    def _obs(self, p, state, noise):
        fix = (p == 0).astype(_F32)
        parts = [fix[None], jnp.where(p == 1, state.stim + noise, 0.0)]
        if self.use_expl_context:
            parts.append(jax.nn.one_hot(state.trial["context"], 2, dtype=_F32))
        return jnp.concatenate(parts).astype(_F32)

    @classmethod
    def make(cls, **kw):
        dim_ring = check_dim_ring(cls.name, kw)
        expl = bool(kw.pop("use_expl_context", False))
        modality = kw.pop("impl_context_modality", 0)
        if expl:
            contexts = [0, 1]
        else:
            if modality not in (0, 1):
                raise ValueError(f"{cls.name}: impl_context_modality must be 0 or 1 when "
                                 f"use_expl_context is False, got {modality!r}")
            contexts = [int(modality)]
        env = cls(dim_ring=dim_ring, use_expl_context=expl)
        return env, env._make_params(cohs=[5, 15, 50], contexts=contexts, **kw)
