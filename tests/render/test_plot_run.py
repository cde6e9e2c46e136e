"""tk.plot_run: plots of run logs (JSONL, one record per step)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tracekit.pictures.run_plot import plot_run, read_run_log, run_series

from .test_render import png_size


def write_log(path, records, tail=""):
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        fh.write(tail)
    return path


RECORDS = [{"event": "start", "config": {"lr": 0.1}}] + [
    {"step": s, "train_score": 0.5 + 0.02 * s, "val_score": 0.4 + 0.02 * s if s % 3 == 0 else None,
     "prompt_tokens": 300 + s, "completion_tokens": 50, "cost": 0.001 * s}
    for s in range(12)
]


def test_read_run_log_skips_blank_and_half_written_lines(tmp_path):
    path = write_log(tmp_path / "run.jsonl", RECORDS, tail='\n\n{"step": 12, "train_sc')
    records = read_run_log(path)
    assert len(records) == len(RECORDS)
    assert read_run_log(RECORDS) == RECORDS


def test_run_series_reads_the_documented_keys():
    series = run_series(RECORDS)
    assert set(series) == {"train_score", "val_score", "tokens", "cost"}
    steps, scores = series["train_score"]
    assert steps == [float(s) for s in range(12)] and scores[3] == pytest.approx(0.56)
    assert series["val_score"][0] == [0.0, 3.0, 6.0, 9.0]
    assert series["tokens"][1][2] == 352.0  # prompt + completion
    # records without `step` use their position; `score` and `tokens` directly
    s2 = run_series([{"score": 1, "tokens": 10}, {"score": 2}])
    assert s2["score"] == ([0.0, 1.0], [1.0, 2.0]) and s2["tokens"] == ([0.0], [10.0])


def test_plot_run_png_and_svg(tmp_path):
    path = write_log(tmp_path / "run.jsonl", RECORDS, tail='{"step": 12, "tr')
    png = plot_run(path, tmp_path / "run.png", title="demo run")
    width, height = png_size(png)
    assert width > 500 and height > 500
    svg = plot_run(RECORDS, tmp_path / "run.svg")
    text = svg.read_text(encoding="utf-8")
    ET.fromstring(text.encode("utf-8"))
    for label in ("train_score", "val_score", "tokens per step", "cost per step"):
        assert label in text


def test_plot_run_without_cost_drops_the_cost_panel(tmp_path):
    records = [{"step": s, "score": s, "tokens": 100, "cost": 0.0} for s in range(5)]
    text = plot_run(records, tmp_path / "run.svg").read_text(encoding="utf-8")
    assert "tokens per step" in text and "cost per step" not in text


def test_plot_run_refuses_a_log_without_anything_to_plot(tmp_path):
    with pytest.raises(ValueError, match="no step"):
        plot_run([{"event": "start"}], tmp_path / "run.png")


def test_plot_run_reads_a_trainer_run_directory(tmp_path):
    """The trainer writes run_dir/log.jsonl with prompt/completion tokens and best_score."""
    run_dir = tmp_path / "runs" / "demo"
    run_dir.mkdir(parents=True)
    records = [{"step": 0, "epoch": 0, "train_score": None, "val_score": 0.5, "best_score": 0.5,
                "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "params": {"p": "x"}}]
    records += [{"step": s, "epoch": 0, "train_score": 0.6, "val_score": 0.5 + 0.1 * s,
                 "best_score": 0.5 + 0.1 * s, "prompt_tokens": 900, "completion_tokens": 100,
                 "cost": 0.0, "changes": [{"solver": "text"}]} for s in (1, 2, 3)]
    write_log(run_dir / "log.jsonl", records)
    series = run_series(read_run_log(run_dir))
    assert series["best_score"][1] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert series["train_score"][0] == [1.0, 2.0, 3.0]  # the null at step 0 is skipped
    assert series["tokens"][1] == [0.0, 1000.0, 1000.0, 1000.0]
    text = plot_run(run_dir, tmp_path / "run.svg").read_text(encoding="utf-8")
    assert "best_score" in text and "3,000 tokens" in text


def test_plots_read_run_logs_with_the_trainers_reader(tmp_path, monkeypatch):
    """One run-log reader: plot_run reads files through tracekit.training.checkpoint.read_log."""
    from tracekit.training import checkpoint

    path = write_log(tmp_path / "run.jsonl", RECORDS, tail='{"step": 12, "tr')
    assert read_run_log(path) == checkpoint.read_log(path)
    seen = []
    real = checkpoint.read_log
    monkeypatch.setattr(checkpoint, "read_log", lambda p: seen.append(p) or real(p))
    plot_run(path, tmp_path / "run.svg")
    assert seen == [path]
