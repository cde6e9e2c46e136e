"""The `tracekit` command line (also `python -m tracekit`).

    tracekit run train.py [args...]          run a training script (as `python train.py args`)
    tracekit run config.toml [--resume]      build a Trainer from a config and fit it
    tracekit show runs/joint [--json]        summary of a run: scores, best parameters, usage
    tracekit graph my_module:build_output    render a traced graph (text, DOT, or a file)

A config (TOML or JSON) names a function that returns a `Trainer`, and its options:

    trainer = "examples/joint_prompt_and_hyperparameters.py:build_trainer"
    run_dir = "runs/joint"        # optional: passed to the function when it accepts it
    resume = true                 # optional: idem
    [options]                     # keyword arguments for the function
    quick = true
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import runpy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tracekit.errors import describe, message_of


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tracekit` console script; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        if extra:  # e.g. an option before any command: say so instead of only printing help
            parser.error(f"unrecognized arguments: {' '.join(extra)}; give a command first")
        parser.print_help()
        return 2
    if args.command != "run" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args, extra) or 0)
    except CLIError as exc:
        print(f"tracekit {args.command}: error: {message_of(exc)}", file=sys.stderr)
        return 1


class CLIError(Exception):
    """A user error reported on stderr with exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracekit", description="Trace, train and inspect AI workflows.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a training script or a config file",
                         description="Run a training script (extra arguments go to it) or a "
                                     "TOML/JSON config that names a function returning a Trainer.")
    run.add_argument("target", help="a .py script, or a .toml / .json config")
    run.add_argument("--resume", action="store_true", help="resume from the run directory (passed on to a script as --resume)")
    run.add_argument("--run-dir", help="the run directory (passed on to a script as --run-dir)")
    run.set_defaults(func=_cmd_run)

    show = sub.add_parser("show", help="summarize a run (directory or log.jsonl)")
    show.add_argument("run", help="a run directory or a log.jsonl file")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.add_argument("--steps", action="store_true", help="also list every step")
    show.add_argument("--plot", metavar="FILE", help="also plot scores and tokens per step to FILE "
                                                     "(.png/.svg/.pdf, through tracekit.pictures.run_plot)")
    show.set_defaults(func=_cmd_show)

    graph = sub.add_parser("graph", help="render a traced graph",
                           description="Call FUNCTION (module:function or file.py:function, no "
                                       "arguments) that returns a traced output node (or a list of "
                                       "them, or a tk.Subgraph) and render its graph.")
    graph.add_argument("function", help="module:function or path/to/file.py:function")
    graph.add_argument("-o", "--output", help="write to this file (.dot/.gv: DOT; .txt: text; other "
                                              "extensions: a picture drawn by tk.render)")
    graph.add_argument("--format", choices=["text", "dot"], default="text",
                       help="what to print when no --output is given (default: text)")
    graph.set_defaults(func=_cmd_graph)
    return parser


# --- run ---------------------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    target = Path(args.target)
    if not target.exists():
        raise CLIError(f"{target} does not exist")
    if not target.is_file() or target.suffix not in (".py", ".toml", ".json"):
        raise CLIError(f"{target}: expected a .py script or a .toml / .json config file")
    if target.suffix == ".py":
        if args.resume or args.run_dir:
            extra = extra + (["--resume"] if args.resume else []) + \
                (["--run-dir", args.run_dir] if args.run_dir else [])
        old_argv, old_path = sys.argv, list(sys.path)
        sys.argv = [str(target), *extra]
        sys.path.insert(0, str(target.resolve().parent))
        try:
            runpy.run_path(str(target), run_name="__main__")
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        finally:
            sys.argv, sys.path[:] = old_argv, old_path
        return 0
    if extra:
        raise CLIError(f"unrecognized arguments for a config: {' '.join(extra)}")
    config = _read_config(target)
    trainer = _build_trainer(config, target, resume=args.resume, run_dir=args.run_dir)
    result = trainer.fit()
    if not getattr(trainer, "progress", False):
        print(result)
    return 0


def _read_config(path: Path) -> dict[str, Any]:
    if path.suffix not in (".toml", ".json"):
        raise CLIError(f"{path}: expected a .py script or a .toml / .json config")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read {path}: {describe(exc)}") from None
    if path.suffix == ".toml":
        import tomllib

        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CLIError(f"{path} is not valid TOML: {message_of(exc)}") from None
    elif path.suffix == ".json":
        from tracekit.errors import DamagedFileError
        from tracekit.storage import parse_json

        try:
            config = parse_json(text, f"config {path}", expect=None)
        except DamagedFileError as exc:
            raise CLIError(message_of(exc)) from None
    else:
        raise CLIError(f"{path}: expected a .py script or a .toml / .json config")
    if not isinstance(config, dict):
        raise CLIError(f"{path} must hold a table/object with a 'trainer' key, got {type(config).__name__}")
    return config


def _build_trainer(config: dict[str, Any], path: Path, resume: bool, run_dir: str | None) -> Any:
    spec = config.get("trainer")
    if not isinstance(spec, str):
        raise CLIError(f"{path}: the config needs trainer = \"module:function\" (a function returning a "
                       f"tracekit Trainer)")
    unknown = set(config) - {"trainer", "options", "run_dir", "resume"}
    if unknown:
        raise CLIError(f"{path}: unknown config keys {sorted(unknown)}; allowed: trainer, options, run_dir, resume")
    factory = load_object(spec, base=path.parent)
    options = dict(config.get("options") or {})
    if run_dir is not None or "run_dir" in config:
        options["run_dir"] = run_dir if run_dir is not None else config["run_dir"]
    if resume or config.get("resume"):
        options["resume"] = True
    accepted: Mapping[str, inspect.Parameter]
    try:
        accepted = inspect.signature(factory).parameters
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    except (TypeError, ValueError):
        accepted, takes_kwargs = {}, True
    for key in ("run_dir", "resume"):
        if key in options and key not in accepted and not takes_kwargs:
            raise CLIError(f"{spec} does not accept {key!r}; add it as a parameter or remove it from the config")
    trainer = factory(**options)
    if not hasattr(trainer, "fit"):
        raise CLIError(f"{spec} returned {type(trainer).__name__}, not a Trainer (an object with fit())")
    return trainer


def load_object(spec: str, base: Path | None = None) -> Any:
    """The object named by "package.module:attr" or "path/to/file.py:attr"."""
    if ":" not in spec:
        raise CLIError(f"{spec!r}: expected module:function or file.py:function")
    module_part, attr = spec.rsplit(":", 1)
    if not module_part.strip() or not attr.isidentifier():
        raise CLIError(f"{spec!r}: expected module:function or file.py:function (both parts "
                       f"given, the function a Python name)")
    if module_part.endswith(".py"):
        file = Path(module_part)
        if not file.is_absolute() and not file.exists() and base is not None:
            file = base / file
        if not file.exists():
            raise CLIError(f"{module_part} does not exist")
        sys.path.insert(0, str(file.resolve().parent))
        namespace = runpy.run_path(str(file), run_name=f"tracekit_cli_{file.stem}")
        if attr not in namespace:
            raise CLIError(f"{file} has no {attr!r}")
        return namespace[attr]
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_part)
    except Exception as exc:  # not found, a relative or malformed name, or the module raised
        raise CLIError(f"cannot import {module_part!r}: {describe(exc)}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise CLIError(f"module {module_part!r} has no {attr!r}") from None


# --- show --------------------------------------------------------------------------------------
def summarize_log(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's summary computed from its log records (with `objectives=`: the objectives,
    the number of validated steps and the Pareto front, rebuilt from the `val_scores`)."""
    if not records:
        return {"steps": 0}
    from tracekit.training.front import front_of_log

    found = front_of_log(records)
    objectives: dict[str, Any] = {} if found is None else {
        "objectives": found[0].directions, "validated_steps": len(found[1]),
        "front": [{"step": m.step, "scores": m.scores, "params": m.params} for m in found[2]]}
    scored = [r for r in records if r.get("val_score") is not None]
    best = records[-1].get("best_score")
    best_step = next((r["step"] for r in records if r.get("improved") and r.get("best_score") == best), 0)
    best_record = next((r for r in records if r["step"] == best_step), records[0])
    return {
        "steps": records[-1]["step"],
        "initial_score": records[0].get("val_score"),
        "best_score": best,
        "best_step": best_step,
        "final_score": scored[-1]["val_score"] if scored else None,
        "reverted_steps": sum(1 for r in records if r.get("reverted")),
        "llm_calls": sum(r.get("llm_calls", 0) for r in records),
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in records),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in records),
        "cost": sum(r.get("cost", 0.0) for r in records),
        "seconds": sum(r.get("seconds", 0.0) for r in records),
        "best_params": best_record.get("params", {}),
        **objectives,
    }


def search_summary(saved: dict[str, Any]) -> dict[str, Any]:
    """What a run summary (summary.json) says about budgets and the pool search."""
    out: dict[str, Any] = {}
    budget = saved.get("budget")
    if isinstance(budget, dict) and isinstance(budget.get("spent"), dict):
        out["metric_calls"] = budget["spent"].get("metric_calls", 0)
        out["budget_left"] = budget.get("left") or {}
    if isinstance(saved.get("best_candidate"), dict):
        out["strategy"] = saved.get("strategy")
        out["best_candidate"] = saved["best_candidate"]
        lineages = saved["pool_front"] if "pool_front" in saved else saved.get("front")  # older: "front"
        front = [c for c in lineages or [] if isinstance(c, dict)]
        out["pool_front"] = [c.get("id") for c in front]
        out["pool_front_lineage"] = front
    return out


def search_from_log(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The pool search of an unfinished run, from its log: the best candidate so far and
    the last logged Pareto front (lineages from the candidates' own records)."""
    lineages = {r["candidate"]["id"]: r["candidate"] for r in records
                if isinstance(r.get("candidate"), dict) and r.get("accepted") and "id" in r["candidate"]}
    if not lineages:
        return {}
    scored = [c for c in lineages.values() if isinstance(c.get("score"), (int, float))]
    last: dict[str, Any] = next((r for r in reversed(records) if isinstance(r.get("front"), list)), {})
    front = [lineages[i] for i in last.get("front", []) if i in lineages]
    out: dict[str, Any] = {"strategy": records[-1].get("strategy"),
                           "metric_calls": records[-1].get("spent_metric_calls", 0), "budget_left": {},
                           "pool_front": [c["id"] for c in front], "pool_front_lineage": front}
    if scored:
        out["best_candidate"] = max(scored, key=lambda c: (c["score"], -c["id"]))
    return out


def _cmd_show(args: argparse.Namespace, extra: list[str]) -> int:
    from tracekit.errors import DamagedFileError
    from tracekit.storage import read_json
    from tracekit.training.checkpoint import BEST_FILE, LOG_FILE, SUMMARY_FILE, read_log

    path = Path(args.run)
    log = path / LOG_FILE if path.is_dir() else path
    if not log.exists():
        raise CLIError(f"no run log at {log}")
    records = read_log(log)
    summary = summarize_log(records)
    run_dir = log.parent
    try:
        if (run_dir / BEST_FILE).exists():  # the exact best values (the log may summarize tensors)
            summary["best_params"] = read_json(run_dir / BEST_FILE, "best-values file")
        if (run_dir / SUMMARY_FILE).exists():
            saved = read_json(run_dir / SUMMARY_FILE, "run summary")
            summary["stop_reason"] = saved.get("stop_reason")
            summary.update(search_summary(saved))
        else:
            summary["stop_reason"] = "unfinished (no summary.json yet; resume to continue)"
            summary.update(search_from_log(records))
    except DamagedFileError as exc:
        raise CLIError(str(exc)) from None
    if "pool_front" in summary and "objectives" not in summary:  # "front": as TrainResult.run_front
        summary["front"], summary["front_lineage"] = summary["pool_front"], summary["pool_front_lineage"]
    if args.plot:
        from tracekit.pictures.run_plot import plot_run

        try:
            plot_run(records, args.plot, title=f"run {run_dir}")
        except ModuleNotFoundError as exc:
            if exc.name != "matplotlib":
                raise
            raise CLIError("--plot needs matplotlib: pip install 'tracekit[plot]'") from None
        summary["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    fmt = lambda s: "n/a" if s is None else f"{s:.4g}"  # noqa: E731
    print(f"run {run_dir}: {summary['steps']} steps ({summary['stop_reason']})")
    score = next(iter(summary.get("objectives") or {"score": ""}))  # the primary objective
    print(f"  validation {score}: {fmt(summary.get('initial_score'))} before -> {fmt(summary.get('best_score'))} "
          f"best (step {summary.get('best_step')}); {summary.get('reverted_steps', 0)} step(s) reverted")
    print(f"  LLM: {summary.get('llm_calls', 0)} calls, "
          f"{summary.get('prompt_tokens', 0) + summary.get('completion_tokens', 0)} tokens, "
          f"cost {summary.get('cost', 0.0):.4g}; time {summary.get('seconds', 0.0):.1f}s")
    if "metric_calls" in summary:
        print(f"  budget: {summary['metric_calls']} metric calls spent"
              + "".join(f"; {k} left {v:.4g}" for k, v in summary.get("budget_left", {}).items()))
    if summary.get("best_candidate") is not None:
        best = summary["best_candidate"]
        print(f"  search ({summary.get('strategy')}): best candidate {best['id']} (step {best['step']}, "
              f"{best['origin']}, parents {best['parents']}, changed {best['changed']})")
        print(f"  Pareto front: {len(summary['pool_front'])} candidate(s)")
        for c in summary.get("pool_front_lineage", []):
            print(f"    candidate {c['id']}: score {fmt(c.get('score'))}, step {c['step']}, {c['origin']}, "
                  f"parents {c['parents']}, changed {c['changed']}")
    if summary.get("objectives"):
        names = list(summary["objectives"])
        print(f"  objectives: {', '.join(f'{n} ({d})' for n, d in summary['objectives'].items())}; "
              f"Pareto front: {len(summary['front'])} of {summary['validated_steps']} validated step(s)")
        for m in summary["front"]:
            print(f"    step {m['step']:>4}: " + ", ".join(f"{n} {fmt(m['scores'][n])}" for n in names))
    print("  best parameters:")
    for name, value in summary.get("best_params", {}).items():
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
        print(f"    {name} = {text if len(text) <= 200 else text[:197] + '...'}")
    if args.plot:
        print(f"  plot: {args.plot}")
    if args.steps:
        print("  steps:")
        for r in records:
            changed = [c["name"] for c in r.get("changes", []) if c.get("changed")]
            mark = " reverted" if r.get("reverted") else (" best" if r.get("improved") else "")
            scores = r.get("val_scores") if isinstance(r.get("val_scores"), dict) else {}
            each = (" [" + ", ".join(f"{n} {fmt(v) if isinstance(v, (int, float)) else v}"
                                     for n, v in scores.items()) + "]") if scores else ""
            print(f"    {r['step']:>4}  train {fmt(r.get('train_score'))}  val {fmt(r.get('val_score'))}"
                  f"{each}{mark}  changed {changed}  tokens {r.get('prompt_tokens', 0) + r.get('completion_tokens', 0)}")
    return 0


# --- graph -------------------------------------------------------------------------------------
def to_dot(graph: Any) -> str:
    """The Graphviz DOT description of a traced graph (output node, nodes list or Subgraph),
    as drawn by `tk.render`."""
    from tracekit.pictures.graph_picture import graph_to_dot

    return graph_to_dot(graph)


def to_text(graph: Any) -> str:
    """The traced calls as lines of code, then the parameters and outputs."""
    from tracekit.graph import Subgraph, subgraph
    from tracekit.nodes import MessageNode, short_repr

    sub = graph if isinstance(graph, Subgraph) else subgraph(graph)
    lines = [repr(sub), "parameters:"]
    lines += [f"  {p.name} [{p.kind}] = {short_repr(p.raw, 80)}" for p in sub.parameters]
    lines.append("calls:")
    lines += [f"  {n.code_line()}" + ("   # raised " + str(n.raw) if n.is_error else "")
              for n in sub.nodes if isinstance(n, MessageNode)]
    lines.append("outputs:")
    lines += [f"  {o.name} = {short_repr(o.raw, 80)}" for o in sub.outputs]
    return "\n".join(lines) + "\n"


def _cmd_graph(args: argparse.Namespace, extra: list[str]) -> int:
    from tracekit.graph import Subgraph
    from tracekit.nodes import Node

    fn = load_object(args.function)
    out = fn
    if callable(fn) and not isinstance(fn, (Node, Subgraph)):
        try:
            inspect.signature(fn).bind()
        except TypeError as exc:
            raise CLIError(f"{args.function} must be callable without arguments ({message_of(exc)})") from None
        except ValueError:
            pass  # no signature to check (some builtins): call it and see
        try:
            out = fn()
        except Exception as exc:
            raise CLIError(f"{args.function}() raised {describe(exc)}") from exc
    if isinstance(out, tuple):
        out = list(out)
    if not (isinstance(out, (Node, Subgraph)) or (isinstance(out, list) and out and
                                                  all(isinstance(o, Node) for o in out))):
        raise CLIError(f"{args.function} returned {type(out).__name__}; it must return a traced output "
                       f"node, a list of them, or a tk.Subgraph")
    if args.output:
        path = Path(args.output)
        if path.suffix in (".dot", ".gv"):
            path.write_text(to_dot(out))
        elif path.suffix == ".txt":
            path.write_text(to_text(out))
        else:
            from tracekit.pictures.graph_picture import render

            try:
                render(out, path)
            except ModuleNotFoundError as exc:
                if exc.name != "matplotlib":
                    raise
                raise CLIError(f"cannot write {path.suffix} files without Graphviz's `dot` or matplotlib "
                               f"(pip install 'tracekit[plot]'); use a .dot or .txt output") from None
        print(f"wrote {path}")
        return 0
    print(to_dot(out) if args.format == "dot" else to_text(out), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
