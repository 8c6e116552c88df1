"""benchmarks/throughput.py and plotting/throughput.py on tiny sizes: record fields, sane numbers,
padding overhead against hand-computed values, the PNG, and one-line CLI errors (exit status 2)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import throughput as tp

ROOT = Path(__file__).resolve().parents[1]
PDM = "PerceptualDecisionMaking-v0"
TINY_GRU = ["model.memory_kwargs={hidden: 8}", "model.head=[8]"]
TINY_MPN = ["model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true}", "model.head=[8]"]
COMMON = ("kind", "jax_version", "jax_backend", "device", "cpu_count", "seconds_median", "compile_s",
          "peak_memory_bytes", "peak_memory_source")
BATCH_FIELDS = ("batching", "tape_size", "segment_length", "batch_size", "burn_in", "stored_state",
                "nominal_transitions", "rows_per_batch", "valid_transitions", "padding_overhead",
                "transitions_per_s")


# ------------------------------------------------------------------------------------------------
# Padding overhead against hand-computed values
# ------------------------------------------------------------------------------------------------
def test_expected_segment_overhead_matches_hand_count():
    # episodes of 20 and 13 transitions, L = 8 (divides neither): segment starts at offsets
    # 0, 8, 16 and 0, 8, holding 8, 8, 4 and 8, 5 valid transitions -> 33 / 5 on average
    state = tp.build_buffer(tp.synthetic_episodes([20, 13]))
    mean_valid, overhead = tp.expected_segment_overhead(state, 8)
    assert mean_valid == pytest.approx(33 / 5)
    assert overhead == pytest.approx(1 - (33 / 5) / 9)  # windows of L + 1 = 9 rows (bootstrap row)
    _, overhead_burn = tp.expected_segment_overhead(state, 8, burn_in=4)
    assert overhead_burn == pytest.approx(1 - (33 / 5) / 13)


def test_measured_padding_overhead_of_sampled_batches():
    import functools

    import jax

    from buffer import make_segment_buffer, make_tape_buffer

    key = jax.random.PRNGKey(3)

    @functools.partial(jax.jit, static_argnames=("batch_size", "length", "burn_in"))
    def seg_sample(state, key, batch_size, length, burn_in=0):
        return make_segment_buffer(*state.obs.shape, batch_size, length, burn_in=burn_in).sample(state, key)

    # every episode has 5 transitions, L = 8: each window holds exactly 5 valid transitions
    short = tp.build_buffer(tp.synthetic_episodes([5, 5, 5]))
    seg = seg_sample(short, key, batch_size=16, length=8)
    assert tp.padding_overhead(seg) == (80, 16 * 9, pytest.approx(4 / 9))
    assert tp.padding_rows(seg) == dict(burn_in=0, bootstrap=16, empty=16 * 3)
    seg = seg_sample(short, key, batch_size=16, length=8, burn_in=4)
    assert tp.padding_overhead(seg) == (80, 16 * 13, pytest.approx(8 / 13))
    assert tp.padding_rows(seg) == dict(burn_in=16 * 4, bootstrap=16, empty=16 * 3)
    # both episodes (21 + 14 rows) fit in a 64-row tape: 33 valid transitions, 31 rows of
    # padding (two final rows, 29 rows after the last episode)
    mixed = tp.build_buffer(tp.synthetic_episodes([20, 13]))
    tape = jax.jit(make_tape_buffer(*mixed.obs.shape, tape_size=64).sample)(mixed, key)
    assert tp.padding_overhead(tape) == (33, 64, pytest.approx(31 / 64))
    assert tp.padding_rows(tape) == dict(final=2, empty=29)
    # many draws: the measured overhead approaches the exact expectation
    big = seg_sample(mixed, key, batch_size=4000, length=8)
    assert tp.padding_overhead(big)[2] == pytest.approx(1 - (33 / 5) / 9, abs=0.01)


def test_batch_configs_grid():
    cfgs = tp.batch_configs(tape_sizes=(1000,), transitions=(1000,), lengths=(10, 50), burn_in_modes=("drqn", "r2d2"))
    assert [c.batching for c in cfgs] == ["tape"] + ["segment"] * 4
    r2d2 = [c for c in cfgs if c.stored_state]
    assert [(c.length, c.batch_size, c.burn_in) for c in r2d2] == [(10, 100, 5), (50, 20, 25)]
    assert r2d2[0].rows == 100 * (5 + 10 + 1)
    assert all(c.nominal_transitions == 1000 for c in cfgs)


# ------------------------------------------------------------------------------------------------
# The measurement functions on tiny sizes
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("trace")


@pytest.fixture(scope="module")
def records(trace_dir):
    configs = [tp.BatchConfig("tape", size=64), tp.BatchConfig("segment", length=8, batch_size=8, burn_in=4, stored_state=True)]
    episodes = tp.synthetic_episodes([20, 13, 30, 7] * 4, trial_steps=6)
    tp.set_trace(trace_dir)  # --trace: one traced call per measurement, in its own folder
    try:
        up = tp.run_update_benchmarks(("gru",), configs, episodes=episodes, repeats=2, sample_repeats=2,
                                      overrides=TINY_GRU, budget_s=0.5)
    finally:
        tp.set_trace(None)
    col = tp.run_collection_benchmarks(
        jax_tasks=(PDM,), jax_envs=(8,), jax_steps=8, host_tasks=(PDM,), host_envs=(4,), host_steps=4,
        policies=("random", "random_nonet"), records=(True,), host_records=(False,), repeats=2, host_repeats=2,
        overrides=TINY_MPN, budget_s=0.5,
    )
    return up + col


def _positive(x):
    return isinstance(x, (int, float)) and np.isfinite(x) and x > 0


def test_update_and_sample_records(records):
    assert not [r for r in records if r.get("error")]
    up = [r for r in records if r["kind"] == "update"]
    sm = [r for r in records if r["kind"] == "sample"]
    assert [r["batching"] for r in up] == ["tape", "segment"] and len(sm) == 2
    for r in up + sm:
        for f in COMMON + BATCH_FIELDS:
            assert f in r, (r["kind"], f)
        assert _positive(r["seconds_median"]) and _positive(r["transitions_per_s"]) and r["compile_s"] > 0
        assert 0 <= r["padding_overhead"] < 1
        assert r["peak_memory_bytes"] > 0
        assert r["valid_transitions"] <= r["nominal_transitions"]
        assert r["valid_transitions"] + sum(r["padding_rows"].values()) == pytest.approx(r["rows_per_batch"])
        json.dumps(r)  # plain JSON
    tape, seg = up
    assert tape["memory"] == "gru" and tape["tape_size"] == 64 and tape["rows_per_batch"] == 64
    assert seg["segment_mode"] == "r2d2" and seg["rows_per_batch"] == 8 * (4 + 8 + 1)
    assert 0 <= seg["padding_overhead_expected"] < 1
    assert tape["loss_finite"] and seg["loss_finite"]
    # the update's throughput is its valid transitions over its own median time
    assert tape["transitions_per_s"] == pytest.approx(tape["valid_transitions"] / tape["seconds_median"])
    assert tape["transitions_per_s_with_sample"] < tape["transitions_per_s"]


def test_trace_writes_one_profile_per_measurement(records, trace_dir):
    up = [r for r in records if r["kind"] in ("update", "sample")]
    assert len({r["trace_dir"] for r in up}) == len(up)
    for r in up:
        assert Path(r["trace_dir"]).parent == trace_dir
        assert list(Path(r["trace_dir"]).rglob("*.xplane.pb"))
    assert not any("trace_dir" in r for r in records if r["kind"] == "collection")


def test_collection_records(records):
    col = [r for r in records if r["kind"] == "collection"]
    got = {(r["backend"], r["policy"], r["record"]) for r in col}
    assert got == {("jax", "random", True), ("jax", "random_nonet", False), ("neurogym", "random", False)}
    for r in col:
        for f in COMMON + ("backend", "task", "num_envs", "policy", "env_steps_per_s", "env_steps_per_call"):
            assert f in r, f
        assert r["task"] == PDM
        assert _positive(r["env_steps_per_s"]) and r["compile_s"] >= 0
        assert r["env_steps_per_call"] == r["num_envs"] * r["steps_per_call"]
        assert r["env_steps_per_s"] == pytest.approx(r["env_steps_per_call"] / r["seconds_median"])


def test_table_and_plot(records, tmp_path):
    from plotting import throughput as pt

    table = tp.format_table(records)
    assert "UPDATE" in table and "COLLECTION" in table and "SAMPLE" in table
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(records))
    out = tmp_path / "fig.png"
    assert pt.main([str(bench), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


# ------------------------------------------------------------------------------------------------
# Command lines: one-line errors, exit status 2
# ------------------------------------------------------------------------------------------------
def test_benchmark_cli_rejects_a_bad_flag():
    p = subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--bogus"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "unrecognized arguments: --bogus" in p.stderr, p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("args", [["--out", "/no/such/folder/f.json"], ["--episodes", "Nope-v0"], ["--only", "x"],
                                  ["--seed", "one"]])
def test_benchmark_cli_bad_arguments_are_one_line(args, capsys):
    with pytest.raises(SystemExit) as e:
        tp.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err, err


def test_plot_cli_errors(tmp_path, capsys):
    from plotting import throughput as pt

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"kind": "update", "memory": "mpn"}]))
    for args in ([str(tmp_path / "missing.json"), "--out", str(tmp_path / "f.png")],
                 [str(bad), "--out", str(tmp_path / "f.png")],
                 [str(empty), "--out", str(tmp_path / "f.png")],
                 [str(wrong), "--out", str(tmp_path / "f.png")],
                 [str(empty), "--out", str(tmp_path / "no" / "f.png")]):
        assert pt.main(args) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error" in err, err
    with pytest.raises(SystemExit) as e:
        pt.main([str(bad)])  # --out missing
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# benchmarks/coldstart.py: reading the MPN_DQN_TIMING marks
# ------------------------------------------------------------------------------------------------
def test_coldstart_parse_and_report():
    from benchmarks import coldstart as cs

    t = 1000.0
    marks = [(0.05, "cli"), (1.0, "imports"), (1.2, "trace 0.1000 lengths"), (1.25, "compile 0.0400 jit(lengths)"),
             (1.5, "train"), (1.6, "run"), (1.9, "trace 0.1000 inner"), (2.0, "trace 0.3000 iterate"),
             (2.1, "cache_hit"), (2.2, "compile 0.1500 jit(iterate)"), (3.0, "row"), (3.5, "compile 1.0 jit(evaluate)")]
    lines = ["tape_dqn.py: writing run/\n"] + [f"MPN_DQN_TIMING {t + dt:.6f} {label}\n" for dt, label in marks]
    r = cs.parse(lines, t)
    assert r["imports"] == pytest.approx(1.0) and r["import_s"] == pytest.approx(0.95)
    assert r["setup"] == pytest.approx(1.5) and r["first_row"] == pytest.approx(3.0)
    assert r["first_iter"] == pytest.approx(2.2)  # the first program ready after `run`
    assert r["programs"] == 2 and r["cache_hits"] == 1  # the evaluation after the first row is not counted
    assert r["trace_s"] == pytest.approx(0.4) and r["compile_s"] == pytest.approx(0.19)  # nested trace once
    text = cs.report([r], [r])
    assert "first training iteration (s)" in text and "2.20" in text
    with pytest.raises(SystemExit) as e:
        cs.main(["--runs", "0"])
    assert e.value.code == 2


@pytest.mark.parametrize("args, needle", [
    (["benchmarks.throughput", "--quick", "--out", "/proc/x.json"], "--out /proc/x.json"),
    (["benchmarks.scan", "--lengths", "-5"], "--lengths"),
    (["benchmarks.scan", "--out", "/proc/x.json"], "--out /proc/x.json"),
    (["benchmarks.scan", "--max-gb", "nan"], "--max-gb"),
    (["benchmarks.fingerprint", "--compare", "/nonexistent", "/tmp"], "--compare /nonexistent"),
    (["benchmarks.sweep", "--runs", "0", "--out", "{tmp}/s.json"], "--runs"),
    (["benchmarks.sweep", "--out", "/proc/x.json"], "--out /proc/x.json"),
    (["benchmarks.sweep", "--runs", "1"], "--out"),  # no default: it once overwrote the committed record
])
def test_benchmark_inputs_are_refused_before_any_work(tmp_path, args, needle):
    """Each once measured for minutes and then failed (or exited 1) instead of refusing at once."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", *[a.format(tmp=tmp_path) for a in args]], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())
