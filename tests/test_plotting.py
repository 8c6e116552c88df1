"""plotting/: run discovery, grouping, bootstrap CIs, the compare figure on fake run folders, bad
input (one line on stderr, exit status 2, no traceback), the psychometric simulation with a
stand-in evidence-accumulating policy, and the psychometric command and load_params on a real tiny
run trained with tape_dqn.py (started in the background at the first test of this module)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import config
from plotting import compare, psychometric
from plotting.common import find_runs, load_run
from plotting.common import (
    PlotError, bootstrap_ci, find_runs, group_label, group_runs, load_params, load_run, wilson_ci,
)
from runs import METRICS
from conftest import background_run

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
TAPE = "tape · mpn"
SEG = "segment L=10 R2D2 (burn-in 5) · mpn"


# ------------------------------------------------------------------------------------------------
# fake run folders
# ------------------------------------------------------------------------------------------------
def _cfg(batching: str, seed: int, **changes) -> dict:
    cfg = config.defaults()
    cfg["name"] = f"{batching}_mpn" if batching == "tape" else "segment_mpn_10"
    cfg["seed"] = seed
    cfg["episode"]["max_steps"] = 110  # a run folder records the cap it measured (auto at start)
    if batching == "segment":
        cfg["segment"].update(length=10, batch_size=100, burn_in=5, stored_state=True)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        d = cfg
        for k in path:
            d = d[k]
        d[last] = value
    return cfg


def _fake_run(path: Path, batching: str, seed: int, level: float, rows: int = 5, summary: bool = True, **changes) -> Path:
    path.mkdir(parents=True)
    cfg = _cfg(batching, seed, **changes)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rng = np.random.default_rng(seed + 100 * (batching == "segment"))
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS)
        w.writeheader()
        for i in range(rows):
            perf = min(1.0, 0.35 + level * (i + 1) / rows + rng.uniform(-0.03, 0.03))
            w.writerow(dict(env_steps=1000 * (i + 1), updates=40 * i, wall_s=round(2.0 * (i + 1) + 0.1 * seed, 3),
                            eval_performance=round(perf, 4), eval_reward_per_trial=round(perf, 4),
                            train_performance=0.5, loss=0.01 if i else "nan", q_mean=0.2, epsilon=0.5))
    if summary:
        (path / "summary.json").write_text(json.dumps(dict(
            experiment=cfg["name"], batching=batching, backend="jax", task=cfg["env"]["task"],
            memory=cfg["model"]["memory"], seed=seed, env_steps=1000 * rows, final_eval_performance=0.5,
            seeds_in_program=3 if batching == "tape" else 1)))
    return path


@pytest.fixture
def two_groups(tmp_path):
    """DIR/tape/seed{0,1,2} and DIR/seg/seed{0,1,2}, as --seeds 3 writes them."""
    for s in range(3):
        _fake_run(tmp_path / "tape" / f"seed{s}", "tape", s, 0.5)
        _fake_run(tmp_path / "seg" / f"seed{s}", "segment", s, 0.3)
    return tmp_path


# the neurogym backend compiles less than the jax backend's fused training loop (~12 s vs ~22 s of
# CPU here); the psychometric simulation runs on the JAX port either way
TINY = [
    "--no-progress", "--set", "env.backend=neurogym", "--set", "train.total_env_steps=512",
    "--set", "env.num_envs=4", "--set", "train.steps_per_iter=16", "--set", "train.learning_starts=128", "--set", "eval.every_env_steps=512", "--set", "eval.trials=20",
    "--set", "eval.final_trials=20", "--set", "eval.num_envs=4",
    "--set", "model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true}", "--set", "model.head=[8]",
    "--set", "tape.size=256", "--set", "train.buffer_capacity=4096",
]


@pytest.fixture(scope="module", autouse=True)
def _tiny_training(tmp_path_factory):
    """Start training the tiny run at the module's first test, so that it runs alongside the
    tests that do not need it; killed at the end if nothing waited for it."""
    yield from background_run(tmp_path_factory, "psy", "experiments/perceptual_decision_making/tape_mpn.yaml", TINY)


@pytest.fixture(scope="module")
def tiny_run(_tiny_training):
    """A real PerceptualDecisionMaking run folder trained with tape_dqn.py for 512 env steps."""
    out, proc = _tiny_training
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


# ------------------------------------------------------------------------------------------------
# common
# ------------------------------------------------------------------------------------------------
def test_find_runs_and_load_run(two_groups):
    runs = find_runs([two_groups / "tape", two_groups / "seg" / "seed1"])
    assert [r.relative_to(two_groups).as_posix() for r in runs] == ["tape/seed0", "tape/seed1", "tape/seed2", "seg/seed1"]
    assert len(find_runs([two_groups])) == 6
    run = load_run(runs[0])
    assert run["cfg"]["seed"] == 0 and run["summary"]["batching"] == "tape" and run["path"] == runs[0]
    assert list(run["metrics"]) == METRICS
    assert run["metrics"]["env_steps"].tolist() == [1000, 2000, 3000, 4000, 5000]
    assert np.isnan(run["metrics"]["loss"][0])
    with pytest.raises(PlotError, match="no such file"):
        find_runs([two_groups / "nope"])
    (two_groups / "empty").mkdir()
    with pytest.raises(PlotError, match="not a run folder"):
        find_runs([two_groups / "empty"])


def test_group_label():
    assert group_label(_cfg("tape", 0)) == TAPE
    assert group_label(_cfg("segment", 0)) == SEG
    gru50 = _cfg("segment", 0, segment__length=50, segment__burn_in=0, segment__stored_state=False, model__memory="gru")
    assert group_label(gru50) == "segment L=50 DRQN · gru"
    # batching from summary.json first, else deduced from the name or the non-default section
    assert group_label(_cfg("tape", 0), {"batching": "segment"}).startswith("segment L=10")
    anon = _cfg("segment", 0, name="my_experiment")
    assert group_label(anon) == SEG
    anon_tape = _cfg("tape", 0, name="x", tape__size=512)
    assert group_label(anon_tape) == TAPE
    assert group_label(_cfg("tape", 0, env__backend="neurogym")) == TAPE + " [neurogym]"


def test_group_runs_splits_by_task_and_settings(tmp_path):
    for s in range(2):
        _fake_run(tmp_path / f"a{s}", "tape", s, 0.5)
        _fake_run(tmp_path / f"b{s}", "tape", s, 0.5, train__lr=3e-4)
        _fake_run(tmp_path / f"c{s}", "tape", s, 0.5, env__task="DelayMatchSample-v0")
    # a config written before a key existed (here env.backend) reads as that key's default
    old = yaml.safe_load((tmp_path / "a0" / "config.yaml").read_text())
    del old["env"]["backend"]
    (tmp_path / "a0" / "config.yaml").write_text(yaml.safe_dump(old))
    groups = group_runs([load_run(d) for d in find_runs([tmp_path])])
    assert list(groups) == ["DelayMatchSample-v0", "PerceptualDecisionMaking-v0"]
    assert list(groups["DelayMatchSample-v0"]) == [TAPE]
    default_lr = config.defaults()["train"]["lr"]  # the group at the schema's default learning rate
    assert sorted(groups["PerceptualDecisionMaking-v0"]) == [f"{TAPE}, lr=0.0003", f"{TAPE}, lr={default_lr}"]
    assert all(len(g) == 2 for t in groups.values() for g in t.values())


def test_bootstrap_ci():
    rng = np.random.default_rng(1)
    noisy = 0.6 + 0.2 * rng.standard_normal((5, 4))
    consistent = 0.6 + 0.01 * rng.standard_normal((5, 4))
    for values in (noisy, consistent):
        mean, lo, hi = bootstrap_ci(values)
        assert np.allclose(mean, values.mean(0))
        assert np.all(lo <= mean) and np.all(mean <= hi) and np.all(lo < hi)
    width = lambda v: np.subtract(*bootstrap_ci(v)[2:0:-1])  # hi - lo
    assert np.all(width(consistent) < width(noisy) / 5)
    one = np.array([[0.3, 0.5, 0.7]])
    mean, lo, hi = bootstrap_ci(one)
    assert np.array_equal(mean, one[0]) and np.array_equal(lo, mean) and np.array_equal(hi, mean)
    # a seed missing at a point (unfinished run): statistics over the seeds that have it
    ragged = np.array([[0.2, 0.4], [0.4, np.nan], [0.6, np.nan]])
    mean, lo, hi = bootstrap_ci(ragged)
    assert np.allclose(mean, [0.4, 0.4]) and lo[1] == hi[1] == 0.4 and lo[0] < 0.4 < hi[0]
    # deterministic for a given seed
    assert np.array_equal(bootstrap_ci(noisy, seed=3)[1], bootstrap_ci(noisy, seed=3)[1])


def test_wilson_ci():
    lo, hi = wilson_ci(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lo[0] == 0.0 and 0 < hi[0] < 0.35 and lo[1] < 0.5 < hi[1] and hi[2] == 1.0 and 0.65 < lo[2] < 1


# ------------------------------------------------------------------------------------------------
# compare
# ------------------------------------------------------------------------------------------------
def test_compare_writes_png(two_groups, capsys):
    out = two_groups / "figs" / "cmp.png"
    assert compare.main([str(two_groups / "tape"), str(two_groups / "seg"), "--out", str(out), "--title", "T"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000
    groups = group_runs([load_run(d) for d in find_runs([two_groups])])
    assert {label: len(runs) for label, runs in groups["PerceptualDecisionMaking-v0"].items()} == {TAPE: 3, SEG: 3}


def test_compare_curves_align_seeds(tmp_path):
    _fake_run(tmp_path / "s0", "tape", 0, 0.5, rows=5)
    _fake_run(tmp_path / "s1", "tape", 1, 0.5, rows=3, summary=False)  # still running
    runs = [load_run(d) for d in find_runs([tmp_path])]
    steps, values = compare.curve_on_steps(runs)
    assert steps.tolist() == [1000, 2000, 3000, 4000, 5000]
    assert np.isnan(values[1, 3:]).all() and not np.isnan(values[:, :3]).any()
    wall, values_w = compare.curve_on_wall(runs)
    assert np.allclose(wall, [2.05, 4.05, 6.05, 8.0, 10.0])
    assert np.array_equal(np.isnan(values_w), np.isnan(values))


def _bad_inputs(tmp_path):
    cases = {"missing path": [str(tmp_path / "nope")]}
    (tmp_path / "empty").mkdir()
    cases["no runs"] = [str(tmp_path / "empty")]
    r = _fake_run(tmp_path / "no_metrics", "tape", 0, 0.5)
    (r / "metrics.csv").unlink()
    cases["no metrics.csv"] = [str(r)]
    r = _fake_run(tmp_path / "bad_header", "tape", 0, 0.5)
    (r / "metrics.csv").write_text("steps,perf\n1,0.5\n")
    cases["missing column"] = [str(r)]
    r = _fake_run(tmp_path / "bad_value", "tape", 0, 0.5)
    (r / "metrics.csv").write_text(",".join(METRICS) + "\n1000,1,2.0,abc,0,0,0,0,0\n")
    cases["not a number"] = [str(r)]
    r = _fake_run(tmp_path / "bad_fields", "tape", 0, 0.5)
    (r / "metrics.csv").write_text(",".join(METRICS) + "\n1000,1,2.0\n")
    cases["short row"] = [str(r)]
    r = _fake_run(tmp_path / "no_rows", "tape", 0, 0.5, rows=0)
    cases["no rows"] = [str(r)]
    return cases


def test_compare_bad_input_exits_2_with_one_line(tmp_path, capsys):
    for name, args in _bad_inputs(tmp_path).items():
        assert compare.main([*args, "--out", str(tmp_path / "x.png")]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("python -m plotting.compare: error: "), (name, err)
        assert sum("error" in line for line in err) == 1, (name, err)
    assert not (tmp_path / "x.png").exists()


def test_compare_cli_error_has_no_traceback(tmp_path):
    r = _fake_run(tmp_path / "bad", "tape", 0, 0.5)
    (r / "metrics.csv").write_text("garbage\n")
    proc = subprocess.run([sys.executable, "-m", "plotting.compare", str(r), "--out", str(tmp_path / "x.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "metrics.csv" in proc.stderr and "missing column" in proc.stderr


# ------------------------------------------------------------------------------------------------
# psychometric: tabulation and simulation (while the tiny run trains)
# ------------------------------------------------------------------------------------------------
def test_psychometric_table_signs_and_counts():
    coh = np.array([0.0, 0.0, 6.4, 6.4, 51.2, 51.2])
    correct = np.array([1, 2, 2, 1, 2, 2])
    choice = np.array([2, 0, 2, 1, 2, 1])
    table = {r["signed_coherence"]: r for r in psychometric.psychometric_table(coh, correct, choice)}
    assert sorted(table) == [-6.4, 0.0, 6.4, 51.2]
    assert table[0.0]["n"] == 2 and table[0.0]["n_no_response"] == 1 and table[0.0]["p_right"] == 1.0
    assert table[-6.4]["p_right"] == 0.0 and table[51.2]["p_right"] == 0.5
    b0, b1 = psychometric.fit_logistic([-1, -1, 1, 1, 0.5, -0.5], [0, 1, 1, 1, 0, 0])
    assert b1 > 0


class _EvidenceAccumulator:
    """A stand-in network with the QNetwork calling convention: the state sums the two stimulus
    channels since the last memory reset; q = [0, sum_1, sum_2], so the policy always presses the
    side with more evidence (ignored before the decision period), which is correct more often at
    high coherence."""

    def initial_state(self, obs_dim):
        import jax.numpy as jnp

        return jnp.zeros((2,))

    def apply(self, params, obs, start, state):
        import jax.numpy as jnp

        state = jnp.where(start[0], 0.0, state) + obs[0, 1:]
        return jnp.concatenate([jnp.zeros((1,)), state])[None], state


def test_simulate_signs_and_memory_rules():
    import jax

    from collector.host import EpisodeSpec
    from collector.jax_envs import make_jax_env

    env, env_params = make_jax_env("PerceptualDecisionMaking-v0")
    log = psychometric.simulate(env, env_params, _EvidenceAccumulator(), EpisodeSpec(trials=3, max_steps=200),
                                None, jax.random.PRNGKey(0), num_envs=16, num_trials=400)  # reset_on_trial
    assert all(v.shape == (400,) for v in log.values())
    assert set(np.unique(log["choice"])) <= {1, 2} and set(np.unique(log["correct"])) <= {1, 2}
    assert np.array_equal(log["performance"] == 1.0, log["choice"] == log["correct"])
    table = {r["signed_coherence"]: r for r in psychometric.psychometric_table(log["coh"], log["correct"], log["choice"])}
    assert sum(r["n"] for r in table.values()) == 400
    assert table[51.2]["p_right"] > 0.95 and table[-51.2]["p_right"] < 0.05
    assert log["performance"].mean() > 0.8
    # memory rules: one-trial episodes without trial resets reset exactly where trial resets do
    # (without any reset the evidence of earlier trials would leak in: accuracy ~0.62 here)
    same = psychometric.simulate(env, env_params, _EvidenceAccumulator(), EpisodeSpec(trials=1, max_steps=200,
                                 reset_on_trial=False), None, jax.random.PRNGKey(0), num_envs=16, num_trials=400)
    assert np.array_equal(same["choice"], log["choice"]) and np.array_equal(same["coh"], log["coh"])


# ------------------------------------------------------------------------------------------------
# psychometric and load_params on a real tiny run
# ------------------------------------------------------------------------------------------------
def test_load_params_round_trips(tiny_run):
    import jax
    import jax.numpy as jnp
    from flax import serialization

    cfg, network, params = load_params(tiny_run)
    assert cfg["model"]["head"] == [8]
    saved = jax.tree.leaves(serialization.msgpack_restore((tiny_run / "params.msgpack").read_bytes()))
    restored = jax.tree.leaves(serialization.to_state_dict(params))
    assert len(saved) == len(restored) and all(np.array_equal(a, b) for a, b in zip(saved, restored))
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    start = jnp.array([True, False, False, True, False, False])
    q, _ = network.apply(params, obs, start)
    assert q.shape == (6, 3) and bool(jnp.isfinite(q).all())


def test_load_params_rejects_a_mismatched_config(tiny_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    cfg["model"]["memory_kwargs"]["hidden"] = 16
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    (other / "params.msgpack").write_bytes((tiny_run / "params.msgpack").read_bytes())
    with pytest.raises(PlotError, match="shape"):
        load_params(other)
    (other / "params.msgpack").unlink()
    with pytest.raises(PlotError, match="no params.msgpack"):
        load_params(other)


def test_psychometric(tiny_run, tmp_path, capsys):
    out = tmp_path / "psy.png"
    assert psychometric.main([str(tiny_run), "--out", str(out), "--trials", "100", "--num-envs", "8"]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(out.with_suffix(".json"))]
    assert out.read_bytes()[:8] == PNG
    result = json.loads(out.with_suffix(".json").read_text())
    table = result["table"]
    assert result["trials"] == 100 and sum(r["n"] for r in table) == 100
    assert 0.0 <= result["no_response_fraction"] <= 1.0 and 0.0 <= result["accuracy"] <= 1.0
    cohs = sorted({abs(r["signed_coherence"]) for r in table})
    assert set(cohs) <= {0.0, 6.4, 12.8, 25.6, 51.2}
    for r in table:
        assert r["n_right"] + r["n_left"] + r["n_no_response"] == r["n"]
        assert 0.0 <= r["p_right_of_all"] <= 1.0
        if r["p_right"] is not None:
            assert 0.0 <= r["ci_lo"] <= r["p_right"] <= r["ci_hi"] <= 1.0


def test_psychometric_refuses_other_tasks(tiny_run, tmp_path, capsys):
    other = tmp_path / "dms"
    other.mkdir()
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    cfg["env"]["task"] = "DelayMatchSample-v0"
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    (other / "params.msgpack").write_bytes((tiny_run / "params.msgpack").read_bytes())
    assert psychometric.main([str(other), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PerceptualDecisionMaking-v0" in err[0] and "DelayMatchSample-v0" in err[0]
    assert psychometric.main([str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_results_table(tmp_path, capsys):
    from plotting import table

    # fake runs: performance 0.35 + level * (i + 1) / 5 at env_steps 1000 * (i + 1), +-0.03 noise
    for s in range(3):
        _fake_run(tmp_path / "tape" / f"seed{s}", "tape", s, 0.6)
        _fake_run(tmp_path / "seg" / f"seed{s}", "segment", s, 0.2)
    assert table.main([str(tmp_path), "--target", "0.7", "--out", str(tmp_path / "t.md")]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "t.md").read_text() == text
    rows = {r["group"]: r for r in table.table_rows([load_run(p) for p in find_runs([tmp_path])], 0.7)}
    tape = rows["tape · mpn"]
    seg = next(v for k, v in rows.items() if k.startswith("segment"))
    # tape: 0.35 + 0.6 * k / 5 >= 0.7 first at k = 3 (0.71 +- 0.03: k = 3 or 4); segment never
    assert tape["reached"] == "3/3" and seg["reached"] == "0/3" and seg["steps"] == "-"
    mean_steps = float(tape["steps"].split()[0])
    assert 3000 <= mean_steps <= 4000
    assert tape["final"].startswith("0.500 [0.500, 0.500]")
    assert tape["program"] == "3 seeds vmapped" and seg["program"] == "1 seed per program"
    assert table.main([str(tmp_path / "nothing")]) == 2


def test_table_and_compare_refuse_bad_outputs_and_summaries(tmp_path, capsys):
    from plotting import compare, table

    run = _fake_run(tmp_path / "runs" / "seed0", "tape", 0, 0.5)
    (tmp_path / "afile").write_text("x")
    assert table.main([str(run), "--out", str(tmp_path / "afile" / "t.md")]) == 2  # below a file
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    del summary["final_eval_performance"]
    (run / "summary.json").write_text(json.dumps(summary))
    assert table.main([str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "final_eval_performance" in err
    # compare --out without a suffix writes and names FIG.png; a folder is refused
    good = _fake_run(tmp_path / "good" / "seed0", "tape", 0, 0.5)
    assert compare.main([str(good), "--out", str(tmp_path / "fig")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "fig.png") and (tmp_path / "fig.png").is_file()
    assert compare.main([str(good), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# hostile inputs, each once a traceback or a hang: one line, exit 2, nothing written
# ------------------------------------------------------------------------------------------------
def _one_line(args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("field, value", [("seeds_in_program", [1]), ("env_steps", "many"), ("target", {"a": 1})])
def test_table_refuses_a_summary_field_of_the_wrong_type(tiny_run, tmp_path, field, value):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(dict(summary, **{field: value})))
    err = _one_line(["plotting.table", str(run)], tmp_path)
    assert f"field '{field}'" in err, err


@pytest.mark.parametrize("args, needle", [
    (["plotting.dynamics", "{run}", "--out", "{tmp}/x.xyz"], "unknown figure type .xyz"),
    (["plotting.compare", "{run}", "--out", "{tmp}/x.xyz"], "unknown figure type .xyz"),
    (["plotting.psychometric", "{run}", "--out", "{tmp}/x.xyz"], "unknown figure type .xyz"),
    (["plotting.dynamics", "{run}", "--seed", "18446744073709551616", "--out", "{tmp}/d.png"], "--seed"),
    (["plotting.dynamics", "{run}", "--num-envs", "1000000000", "--out", "{tmp}/d.png"], "--num-envs"),
    (["plotting.psychometric", "{run}", "--num-envs", "100000000", "--out", "{tmp}/p.png"], "--num-envs"),
    (["plotting.psychometric", "{run}", "--trials", "1000000000", "--out", "{tmp}/p.png"], "--trials"),
    (["plotting.psychometric", "{run}", "--out", "/proc/no-such-place/p.png"], "--out"),
    (["benchmarks.panel", "--table-only", "--out", "{tmp}/panel", "--figure", "{tmp}/x.xyz"], "unknown figure type"),
])
def test_plotting_inputs_are_refused_before_any_work(tiny_run, tmp_path, args, needle):
    args = [a.format(run=tiny_run, tmp=tmp_path) for a in args]
    err = _one_line(args, tmp_path)
    assert needle in err, err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], list(tmp_path.rglob("*"))


def test_throughput_plot_refuses_an_unwritable_out(tmp_path):
    """/proc takes no new file, even for root (a read-only folder does not stop root)."""
    err = _one_line(["plotting.throughput", str(ROOT / "figures" / "throughput_cpu_quick.json"), "--out",
                     "/proc/t.png"], tmp_path)
    assert "--out /proc/t.png" in err, err
