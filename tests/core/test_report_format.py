"""A printed step report: one line per parameter, `name: old -> new (solver) — short reason`,
the values shortened and the reason cut to its first clause; the whole reason stays in the
report object (tracekit/report.py)."""

from __future__ import annotations

import torch

import tracekit as tk
from tracekit.report import LINE_WIDTH, ParamChange, StepReport, change_line, short_reason

NESTED = ("explored: a recombination of pieces of values seen, because the model only gave values that "
          "cannot be used (pasted from the prompt, or of another form) (positive_words: the current value "
          "is a comma-separated list (of single lowercase words); propose a value not tried yet (the "
          "suggestion has the same words as the current value))")


def test_a_long_nested_reason_is_cut_to_its_first_clause():
    assert short_reason(NESTED) == "explored: a recombination of pieces of values seen"
    assert short_reason("LLM suggestion, candidate 1/1 (temperature 0)") == "LLM suggestion, candidate 1/1"
    assert short_reason("kept: the feedback gives no direction; bracket [0.1, 0.5]") == \
        "kept: the feedback gives no direction"
    assert short_reason("(only an aside)") == "only an aside"
    long = short_reason("a reason without any break " * 10, limit=40)
    assert len(long) <= 40 and long.endswith("…") and not long.endswith(" …")


def test_printing_a_report_gives_one_line_per_parameter_and_keeps_the_whole_reason():
    report = StepReport([
        ParamChange("positive_words", "text", "text", "'great, lovely'", repr("slow, lovely, cold, tasty, " * 5),
                    True, NESTED),
        ParamChange("threshold", "numeric", "bayesian", "0.45", "0.45", False,
                    "kept: TPE: 4 new trials, none better than the current values (best loss 0.25)"),
    ], llm_calls=3, prompt_tokens=3000, completion_tokens=25)
    lines = str(report).splitlines()
    assert lines[0] == "step: 1/2 parameters changed in 0.000s; LLM calls 3, tokens 3025, cost 0"
    assert len(lines) == 3 and all(len(line) <= LINE_WIDTH for line in lines)
    text_line, kept_line = lines[1:]
    assert text_line.startswith("  positive_words: 'great, lovely' -> 'slow, lovely, cold, tasty, ")
    assert "…' (text) — explored: a recombination" in text_line
    assert text_line.count("because") == 0 and text_line.count("(") == 1  # the solver only
    assert kept_line == "  threshold: kept 0.45 (bayesian) — TPE: 4 new trials, none better than the current values"
    assert report.changes[0].reason == NESTED  # the whole reason stays in the object
    full = report.format(full=True)
    assert NESTED in full and "positive_words [text, text]" in full


def test_numbers_are_shown_to_four_significant_digits():
    w = tk.param(torch.zeros(3), name="weights")
    opt = tk.Optimizer([w], numeric="sgd", lr=0.1)
    (w.raw * torch.tensor([1 / 3, -2 / 3, 1e-5])).sum().backward()
    report = opt.step()
    assert report["weights"].line() == "  weights: [0, 0, 0] -> [-0.03333, 0.06667, -1e-06] (gradient)"
    assert report["weights"].old == "[0.0, 0.0, 0.0]"  # the previews themselves are unchanged
    line = str(report).splitlines()[1]
    assert line == report["weights"].line()


def test_change_line_shortens_values_and_drops_a_repeated_kept():
    line = change_line("cue_words", "'" + "x" * 80 + "'", "'y'", "text", True)
    assert line == "  cue_words: '" + "x" * 27 + "…' -> 'y' (text)"
    kept = change_line("cue_words", "'a'", "'a'", "text", False, "kept: the model only repeated values (x)")
    assert kept == "  cue_words: kept 'a' (text) — the model only repeated values"
    # a run log's preview (short_repr's cut mark) reads as a cut value
    assert change_line("w", "[0.4999999701976776, -0.4999...[+18 chars]", "[1]", "gradient", True) == \
        "  w: [0.4999999701976776, -0.4999… -> [1] (gradient)"
