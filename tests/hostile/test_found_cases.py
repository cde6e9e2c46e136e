"""One regression test per class of failure the property suite found (docs/guarantees.md
lists them)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

import tracekit as tk
from tracekit.cli import main as cli_main


@tk.bundle()
def echo(prompt):
    """The workflow."""
    return prompt


@pytest.mark.parametrize("structured", [True, False])
def test_a_reply_with_an_unpaired_surrogate_is_not_applied(structured):
    prompt = tk.param("Answer briefly.", name="prompt")
    reply = '{"suggestion": {"prompt": "lone \\ud800 surrogate"}}'
    opt = tk.Optimizer([prompt], llm=lambda messages: reply, max_reasks=0, use_structured=structured)
    opt.backward(echo(prompt), "too short")
    report = opt.step()
    assert prompt.data == "Answer briefly."
    assert "surrogate" in report["prompt"].reason or "Unicode" in report["prompt"].reason, report


def test_numeric_text_is_not_a_starting_point():
    with pytest.raises(ValueError, match="x0"):
        tk.minimize(lambda x: (x ** 2).sum(), "0")


def test_an_option_before_any_command_is_an_error():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            pytest.raises(SystemExit) as exit_:
        cli_main(["-:"])
    assert exit_.value.code == 2 and "unrecognized arguments" in err.getvalue()


def test_initial_values_go_through_the_parameters_own_validation():
    with pytest.raises(ValueError, match="value"):
        tk.param("   ")  # a later assignment of "   " is refused: so is the first
    with pytest.raises(ValueError, match="value"):
        tk.param(torch.tensor([float("nan"), 1.0]))


def test_string_choices_are_not_a_list_of_letters():
    with pytest.raises(TypeError, match="choices"):
        tk.param("a", choices="abc")


def test_a_wrong_type_is_not_coerced_by_the_json_repair():
    # a number for a text parameter: the schema-guided repair made it "0", which was applied
    prompt = tk.param("Answer briefly.", name="prompt")
    opt = tk.Optimizer([prompt], llm=lambda messages: '{"suggestion": {"prompt": 0}}', max_reasks=0)
    opt.backward(echo(prompt), "too short")
    report = opt.step()
    assert prompt.data == "Answer briefly.", report
    assert "string" in report["prompt"].reason


@pytest.mark.parametrize("spec", [":", "os:", ":f", ".rel:f", "a..b:f"])
def test_a_malformed_cli_function_name_is_an_error_line(spec):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["graph", spec])
    assert code == 1 and "error" in err.getvalue()


def test_cli_run_on_a_directory_or_a_config_that_is_not_a_table_is_an_error_line(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    for target in ["/", str(tmp_path / "list.json"), str(tmp_path / "bad.toml")]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["run", target])
        assert code == 1 and "error" in err.getvalue(), (target, err.getvalue())


@pytest.mark.parametrize("spec", ["json:load", "json:loads"])
def test_cli_graph_of_a_function_that_needs_arguments_is_an_error_line(spec):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["graph", spec])
    assert code == 1 and "without arguments" in err.getvalue()
