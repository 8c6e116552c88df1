"""The registry of the pure-JAX NeuroGym ports and the one task table (no JAX import here).

    from collector.tasks import JAX_TASKS, TASK_META, make_jax_env
    env, params = make_jax_env("GoNogo-v0", dt=50)

`PORTS` has one line per ported task: its neurogym id, the module under collector/tasks/ that
defines the class (named as the id without "-v0"), and its metadata at neurogym's defaults:
- random: performance (fraction of trials with info["performance"] = 1) of the uniformly random
  policy, measured on the port and checked against neurogym by the task's fidelity test;
- ceiling: the best performance a policy can reach, from an ideal observer (given the noise) or a
  scripted policy; None where no such figure is known;
- ceiling_by: "ideal observer", "scripted policy" or None;
- target: the default eval.target of the task's experiment files.
Plotting, tables and benchmarks read this table (TASK_META); `make_jax_env` and `JAX_TASKS` serve
training and config. Adding a port = one module, one line below, one fidelity test (docs/porting.md).
Modules are imported on first use, so importing this package costs nothing.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple


class TaskMeta(NamedTuple):
    task: str  # neurogym id
    module: str  # collector/tasks/<module>.py
    random: float  # random-policy performance
    ceiling: float | None  # ideal-observer or scripted-policy performance
    ceiling_by: str | None  # "ideal observer" | "scripted policy" | None
    target: float | None  # default eval.target (None: the task reports no performance)

    @property
    def class_name(self) -> str:
        return self.task.rsplit("-", 1)[0]


# One line per port; append yours at the end (keep one line each: parallel edits then merge cleanly).
#       task id                          module                        random  ceiling  ceiling_by          target
PORTS = (
    TaskMeta("PerceptualDecisionMaking-v0", "perceptual_decision_making", 0.337, 0.898, "ideal observer", 0.85),
    TaskMeta("DelayMatchSample-v0", "delay_match_sample", 0.495, 1.0, "ideal observer", 0.95),
    TaskMeta("ContextDecisionMaking-v0", "context_decision_making", 0.332, 0.945, "ideal observer", 0.85),
    TaskMeta("GoNogo-v0", "go_nogo", 0.484, 0.5, "scripted policy", 0.45),
    TaskMeta("DelayComparison-v0", "delay_comparison", 0.333, 0.996, "scripted policy", 0.95),
    TaskMeta("PerceptualDecisionMakingDelayResponse-v0", "perceptual_decision_making_delay_response", 0.5, 0.886, "ideal observer", 0.8),
    TaskMeta("DelayMatchCategory-v0", "delay_match_category", 0.499, 0.5, "ideal observer", 0.45),
    TaskMeta("IntervalDiscrimination-v0", "interval_discrimination", 0.481, 1.0, "scripted policy", 0.9),
    TaskMeta("ToneDetection-v0", "tone_detection", 0.0, None, None, None),
    TaskMeta("EconomicDecisionMaking-v0", "economic_decision_making", 0.5, 1.0, "scripted policy", 0.9),
    TaskMeta("ProbabilisticReasoning-v0", "probabilistic_reasoning", 0.498, 0.915, "ideal observer", 0.85),
    TaskMeta("DelayPairedAssociation-v0", "delay_paired_association", 0.484, 0.5, "scripted policy", 0.45),
    TaskMeta("AntiReach-v0", "anti_reach", 0.031, 1.0, "scripted policy", 0.9),
    TaskMeta("MultiSensoryIntegration-v0", "multi_sensory_integration", 0.333, 0.907, "ideal observer", 0.85),
    TaskMeta("DelayMatchSampleDistractor1D-v0", "delay_match_sample_distractor_1d", 0.0, 1.0, "scripted policy", 0.9),
    TaskMeta("ReadySetGo-v0", "ready_set_go", 0.002, 1.0, "scripted policy", 0.8),
    TaskMeta("DualDelayMatchSample-v0", "dual_delay_match_sample", 0.934, 1.0, "scripted policy", 0.98),
    TaskMeta("MotorTiming-v0", "motor_timing", 0.002, 1.0, "scripted policy", 0.8),
    TaskMeta("PulseDecisionMaking-v0", "pulse_decision_making", 0.5, 0.96, "ideal observer", 0.9),
    TaskMeta("OneTwoThreeGo-v0", "one_two_three_go", 0.005, 1.0, "scripted policy", 0.8),
    TaskMeta("Bandit-v0", "bandit", 0.0, None, None, None),
    TaskMeta("PostDecisionWager-v0", "post_decision_wager", 0.212, 0.632, "ideal observer", 0.62),
    TaskMeta("Reaching1D-v0", "reaching_1d", 0.175, 0.226, "scripted policy", 0.2),
    TaskMeta("DawTwoStep-v0", "daw_two_step", 0.333, None, None, None),
    TaskMeta("Reaching1DWithSelfDistraction-v0", "reaching_1d_with_self_distraction", 0.175, 0.226, "scripted policy", 0.2),
    TaskMeta("HierarchicalReasoning-v0", "hierarchical_reasoning", 0.05, None, None, None),
)

TASK_META = {m.task: m for m in PORTS}
JAX_TASKS = tuple(TASK_META)


def task_class(task: str):
    """The port's class (imports its module)."""
    if task not in TASK_META:
        raise ValueError(f"unknown or unsupported task {task!r} for the JAX backend "
                         f"(supported: {', '.join(JAX_TASKS)})")
    meta = TASK_META[task]
    return getattr(importlib.import_module(f"collector.tasks.{meta.module}"), meta.class_name)


def make_jax_env(task: str, **kwargs):
    """(env, params) for a ported NeuroGym task id, with neurogym's constructor kwargs; ValueError
    (one line, naming it) for an unknown task or an unsupported argument."""
    cls = task_class(task)
    for k in kwargs:
        if k not in cls.kwargs:
            raise ValueError(f"{task}: unsupported keyword argument {k!r} "
                             f"(supported: {', '.join(cls.kwargs)})")
    for k in ("timing", "rewards"):
        if kwargs.get(k) is not None and not isinstance(kwargs[k], dict):
            raise ValueError(f"{task}: {k} must be a dict, got {kwargs[k]!r}")
    return cls.make(**dict(kwargs))


class Score(NamedTuple):
    """How the task panel (benchmarks/panel.py) judges a task where neurogym's `performance` cannot
    show what an agent learned: the metrics.csv column it reads, that column's random-policy and
    ceiling values at the task's defaults (ceiling None: nothing to learn), and why."""

    column: str  # "eval_performance" | "eval_reward_per_trial"
    random: float
    ceiling: float | None
    why: str


# Tasks NOT judged on neurogym's performance with TASK_META's figures (every other port is).
# Random rewards: the uniformly random policy on the real neurogym env, 20,000 trials.
SCORES = {
    "GoNogo-v0": Score(
        "eval_reward_per_trial", 0.239, 0.5,
        "performance counts a correctly withheld no-go trial as 0, so 'always go' already scores the 0.5 "
        "ceiling; reward per trial (go answered +1, no-go withheld 0, wrong go -0.5) tells them apart"),
    "DelayPairedAssociation-v0": Score(
        "eval_reward_per_trial", 0.008, 0.5,
        "performance counts a correctly withheld no-go trial as 0, so 'always go' already scores the 0.5 "
        "ceiling; reward per trial (go answered +1, no-go withheld 0, wrong go -1) tells them apart"),
    "DelayMatchCategory-v0": Score(
        "eval_performance", 0.499, None,
        "unsolvable at its defaults: with dim_ring = 2 the ring shows cos(theta) and -cos(theta), the same "
        "for theta and -theta, so the category (the sign of sin(theta)) is never observed; 0.5 is the ceiling"),
    "ToneDetection-v0": Score(
        "eval_reward_per_trial", 0.0, None,
        "no reward rule: every step pays 0 and performance is always 0, so no policy is better than another"),
    "Bandit-v0": Score(
        "eval_reward_per_trial", 0.5, None,
        "both arms pay 1 with probability 0.5 at the defaults (p = (0.5, 0.5)): every policy earns 0.5 per trial"),
}


def score_of(task: str) -> Score:
    """The column, random value and ceiling the task panel judges `task` by (None ceiling where
    neither an ideal observer nor a scripted policy is known, or where there is nothing to learn)."""
    if task in SCORES:
        return SCORES[task]
    m = TASK_META[task]
    return Score("eval_performance", m.random, m.ceiling, m.ceiling_by or "no known ceiling")
