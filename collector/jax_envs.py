"""Pure-JAX ports of NeuroGym 2.3.1 tasks: the names the rest of the project imports.

The ports live in collector/tasks/ (one module per task on the declarative base
collector/tasks/base.py, whose docstring states the API and the step semantics; the registry and
the task table are collector/tasks/__init__.py). This module re-exports them:

    env, params = make_jax_env("PerceptualDecisionMaking-v0", sigma=1.0, timing={"stimulus": 1000})
    obs, state = env.reset(key, params)
    obs, state, reward, done, info = env.step(key, state, action, params)
"""
from __future__ import annotations

from collector.tasks import JAX_TASKS, TASK_META, make_jax_env, task_class
from collector.tasks.base import EnvParams, EnvState, PeriodTiming, TrialTask, period_index

__all__ = [
    "JAX_TASKS",
    "TASK_META",
    "EnvParams",
    "EnvState",
    "PeriodTiming",
    "TrialTask",
    "make_jax_env",
    "period_index",
    "task_class",
]
