"""benchmarks/panel.py: the table's figures from hand-made run folders, a real tiny panel run
(train, table, figure, resume), and one-line errors for bad input."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import panel
from collector.tasks import SCORES, TASK_META, score_of

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "benchmarks.panel", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def fake_run(values, final, column="eval_performance"):
    n = len(values)
    metrics = {"env_steps": np.arange(1, n + 1) * 1000.0, "wall_s": np.arange(1, n + 1) * 2.0,
               column: np.asarray(values, float)}
    return dict(metrics=metrics, summary={"final_" + column: final}, cfg={}, path=None)


def test_seed_figures_reach_and_stability():
    target = 0.8
    f = panel.seed_figures(fake_run([0.1, 0.5, 0.82, 0.9, 0.77, 0.95], 0.95), "eval_performance", target)
    assert f["reach"] == (3000.0, 6.0)
    assert f["stable"] is True  # 0.77 is within 0.05 below the target
    f = panel.seed_figures(fake_run([0.1, 0.85, 0.74, 0.9], 0.9), "eval_performance", target)
    assert f["reach"] == (2000.0, 4.0) and f["stable"] is False
    f = panel.seed_figures(fake_run([0.1, 0.2], 0.2), "eval_performance", target)
    assert f["reach"] is None and f["stable"] is None and f["final"] == 0.2


def test_scores_cover_the_quirky_tasks():
    assert set(SCORES) <= set(TASK_META)
    go = score_of("GoNogo-v0")
    assert go.column == "eval_reward_per_trial" and go.random < go.ceiling
    assert score_of("PerceptualDecisionMaking-v0").ceiling == TASK_META["PerceptualDecisionMaking-v0"].ceiling
    # tasks with no known ceiling and something to learn get a GRU reference; the rest do not
    assert panel.needs_reference("DawTwoStep-v0") and not panel.needs_reference("Bandit-v0")
    assert not panel.needs_reference("GoNogo-v0")


def test_normalised_scores_and_rliable_aggregates():
    rows = [dict(task=t, setting=s, random=0.2, ceiling=1.0, finals=[0.2 + 0.8 * v for v in vals])
            for t in ("A", "B", "C") for s, vals in (("tape_mpn", [1.0, 0.9, 1.0]), ("tape_gru", [0.5, 0.4, 0.6]))]
    assert panel.normalised(rows[0]) == pytest.approx([1.0, 0.9, 1.0])
    agg = panel.aggregates(rows, reps=200)
    assert agg["IQM tape_mpn"]["value"] == pytest.approx(np.mean([1.0, 0.9, 1.0] * 3), abs=0.05)
    assert agg["P(tape_mpn > tape_gru)"]["value"] == pytest.approx(1.0)
    assert agg["IQM tape_gru"]["ci"][0] <= agg["IQM tape_gru"]["value"] <= agg["IQM tape_gru"]["ci"][1]


def test_tiny_panel_trains_tabulates_and_keeps_finished_runs(tmp_path):
    out, table, fig = tmp_path / "panel", tmp_path / "panel.md", tmp_path / "panel.png"
    args = ["--out", str(out), "--tasks", "GoNogo-v0", "--settings", "tape_mpn", "--seeds", "2",
            "--steps", "1024", "--table", str(table), "--figure", str(fig), "--reps", "50"]
    r = run(*args, "--set", "model.memory_kwargs={hidden: 8}", "--set", "model.head=[8]",
            "--set", "train.learning_starts=256", "--set", "eval.trials=50", "--set", "eval.num_envs=16")
    assert r.returncode == 0, r.stderr
    assert (out / "tape_mpn" / "go_nogo" / "seed1" / "summary.json").is_file()
    text = table.read_text()
    assert "| GoNogo-v0 | tape_mpn | reward per trial | 0.239 | 0.500" in text
    assert fig.stat().st_size > 1000
    rows = json.loads(table.with_suffix(".json").read_text())["rows"]
    assert rows[0]["seeds"] == 2 and len(rows[0]["finals"]) == 2
    before = (out / "tape_mpn" / "go_nogo" / "seed0" / "metrics.csv").read_bytes()
    r = run(*args)  # finished: nothing trains again
    assert r.returncode == 0, r.stderr
    assert "tape_dqn.py" not in r.stdout
    assert (out / "tape_mpn" / "go_nogo" / "seed0" / "metrics.csv").read_bytes() == before


@pytest.mark.parametrize("args, words", [
    (["--tasks", "NoSuchTask-v0"], "unknown task"),
    (["--settings", "tape_lstm"], "unknown setting"),
    (["--seeds", "0"], "must be positive"),
    (["--set", "train.lr"], "--set"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, words):
    r = run("--out", str(tmp_path / "p"), "--table-only", *args)
    assert r.returncode == 2
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_refused_override_stops_the_panel(tmp_path):
    r = run("--out", str(tmp_path / "p"), "--tasks", "GoNogo-v0", "--settings", "tape_mpn", "--set", "train.lrr=1")
    assert r.returncode == 2
    assert "train.lrr" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_damaged_run_folder_is_one_line(tmp_path):
    from pathlib import Path as P

    bad = fake_run([0.1, 0.9], "oops")
    bad["path"] = P("x")
    with pytest.raises(panel.PlotError, match="not a number"):
        panel.seed_figures(bad, "eval_performance", 0.8)


def test_unwritable_out_and_empty_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run("--out", str(blocker / "sub"), "--tasks", "GoNogo-v0")
    assert r.returncode == 2 and "cannot write" in r.stderr
    r = run("--out", str(tmp_path / "empty"), "--table-only")
    assert r.returncode == 2 and "no run folders" in r.stderr


SMALL = ["--set", "model.memory_kwargs={hidden: 8}", "--set", "model.head=[8]", "--set", "train.learning_starts=256",
         "--set", "eval.trials=50", "--set", "eval.num_envs=16"]


def test_sigterm_stops_the_program_too_and_a_rerun_resumes_it(tmp_path):
    """SIGTERM to the panel once left its child training as an orphan, and a rerun could never
    resume (it passed --seeds and --set along with --resume). Here the child checkpoints and stops
    with the panel, and the rerun continues it from its checkpoint to the end, seeds 3 and 4
    (with --set seed=3 the panel once never saw the program as finished)."""
    import os
    import signal
    import time

    out = tmp_path / "panel"
    args = ["--out", str(out), "--tasks", "GoNogo-v0", "--settings", "tape_mpn", "--seeds", "2", "--steps", "20480",
            "--reps", "50", *SMALL, "--set", "eval.every_env_steps=1024", "--set", "checkpoint.every_updates=8",
            "--set", "seed=3"]
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.panel", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    program = out / "tape_mpn" / "go_nogo"
    t0 = time.time()
    while not ((program / "checkpoint.pkl").is_file() and (program / "seed4" / "metrics.csv").is_file()
               and len((program / "seed4" / "metrics.csv").read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.time() - t0 < 300, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.1)
    child = int((program / ".lock").read_text())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "run the same command again" in err and "Traceback" not in err, err
    with pytest.raises(ProcessLookupError):  # the program stopped with the panel
        os.kill(child, 0)
    assert not (program / "seed4" / "summary.json").exists()
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert "--resume" in r.stdout
    assert all((program / f"seed{s}" / "summary.json").is_file() for s in (3, 4))
    r = run(*args)  # now finished: nothing trains again
    assert r.returncode == 0 and "tape_dqn.py" not in r.stdout, r.stdout


def test_a_refused_program_leaves_no_log_or_folder(tmp_path):
    out = tmp_path / "p"
    r = run("--out", str(out), "--tasks", "GoNogo-v0", "--settings", "tape_mpn", "--set", "train.lrr=1")
    assert r.returncode == 2 and "train.lrr" in r.stderr
    assert not [p for p in out.rglob("*")], list(out.rglob("*"))
