"""Robust runs: kill -9 or SIGTERM then --resume equals an uninterrupted run, two identical runs
give identical metrics, numerical guards, the up-front memory check. Real entry points, tiny budgets."""
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = str(ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml")
TINY = [
    "--set", "env.num_envs=4", "--set", "episode.trials=2", "--set", "episode.max_steps=60",
    "--set", "model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true}", "--set", "model.head=[8]",
    "--set", "train.total_env_steps=3200", "--set", "train.steps_per_iter=16", "--set", "train.learning_starts=128",
    "--set", "train.buffer_capacity=2048", "--set", "tape.size=128", "--set", "eval.every_env_steps=320",
    "--set", "eval.trials=10", "--set", "eval.final_trials=10", "--set", "eval.num_envs=4",
    "--set", "checkpoint.every_updates=8", "--no-progress",
]


def start(out, backend, *extra):
    return subprocess.Popen(
        [sys.executable, "tape_dqn.py", EXPERIMENT, "--out", str(out), *TINY, "--set", f"env.backend={backend}", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )


def finish(proc, expect=0):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == expect, err[-3000:]
    return out, err


def run(out, backend, *extra):
    return finish(start(out, backend, *extra))


def resume(out):
    proc = subprocess.Popen([sys.executable, "tape_dqn.py", "--resume", str(out), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    return finish(proc)


def rows(out):
    """metrics.csv without the wall-time column."""
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(open(out / "metrics.csv"))]


def summary(out):
    s = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in s.items() if "wall" not in k}


def wait_for_checkpoint(proc, out, min_rows=4, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (out / "checkpoint.pkl").exists() and (out / "metrics.csv").exists():
            if sum(1 for _ in open(out / "metrics.csv")) - 1 >= min_rows:
                return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run per backend."""
    base = tmp_path_factory.mktemp("ref")
    for backend in ("jax", "neurogym"):
        run(base / backend, backend)
    return base


@pytest.mark.parametrize("backend", ["jax", "neurogym"])
def test_identical_runs_give_identical_metrics(tmp_path, reference, backend):
    run(tmp_path / "again", backend)
    assert len(rows(reference / backend)) == 10
    assert rows(tmp_path / "again") == rows(reference / backend)
    assert summary(tmp_path / "again") == summary(reference / backend)


@pytest.mark.parametrize("backend, how", [("jax", "kill"), ("neurogym", "kill"), ("jax", "term")])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, reference, backend, how):
    out = tmp_path / "run"
    proc = start(out, backend)
    wait_for_checkpoint(proc, out)
    if how == "kill":
        proc.kill()  # SIGKILL: no chance to write anything
        proc.wait()
    else:
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc, expect=128 + signal.SIGTERM)
        assert "SIGTERM" in err and "--resume" in err
    assert not (out / "summary.json").exists()
    resume(out)
    assert rows(out) == rows(reference / backend)
    assert summary(out) == summary(reference / backend)
    # the run is finished: resuming again is refused
    proc = subprocess.run([sys.executable, "tape_dqn.py", "--resume", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "already finished" in proc.stderr


def test_non_finite_loss_stops_the_run_naming_the_update(tmp_path):
    out = tmp_path / "run"
    _, err = finish(start(out, "neurogym", "--set", "train.lr=1e38", "--set", "train.grad_clip=1e38"), expect=3)
    line = err.strip().splitlines()[-1]
    assert "non-finite loss or parameters at update" in line and "Traceback" not in err
    assert not (out / "summary.json").exists()
    assert (out / "metrics.csv").read_text().startswith("env_steps,")


def test_a_buffer_that_cannot_fit_fails_at_once_quoting_the_figure(tmp_path):
    proc = subprocess.run(
        [sys.executable, "tape_dqn.py", EXPERIMENT, "--out", str(tmp_path / "run"), "--set", "train.buffer_capacity=100000000000"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert "train.buffer_capacity" in proc.stderr and "GiB" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_misuse_is_a_one_line_error(tmp_path, capsys):
    from training import cli_main

    assert cli_main(["--resume", str(tmp_path)], "tape") == 2
    assert "no checkpoint.pkl" in capsys.readouterr().err
    assert cli_main(["--resume", str(tmp_path), EXPERIMENT], "tape") == 2
    assert "--resume takes no config file" in capsys.readouterr().err
    assert cli_main([], "tape") == 2
    assert "give an experiment YAML file" in capsys.readouterr().err


def test_binary_garbage_is_not_valid_yaml(tmp_path, capsys):
    from training import cli_main

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00\x81garbage")
    assert cli_main([str(bad), "--out", str(tmp_path / "r")], "tape") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not valid YAML" in err
