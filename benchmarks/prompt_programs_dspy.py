"""DSPy's side of benchmarks/prompt_programs.py (runs in DSPy's own venv; no tracekit import).

    python prompt_programs_dspy.py CONFIG_JSON   ->  one JSON object per line on stdout

CONFIG_JSON: {"base_url", "model", "train", "val", "choices", "instruction", "budget", "seed",
"optimizers"}. Each optimizer compiles the same triage program (`ticket -> label`, label a
Literal of the choices) against the same llama.cpp server, with the caches off. Its metric
calls are counted by wrapping the metric (the compile's own calls: train and validation
scoring); the budget is passed as each optimizer's native knob (GEPA's max_metric_calls; the
breadth/depth or trials that fit it for COPRO and MIPROv2). Validation accuracy before and
after is scored outside the budget. A crash is reported with its error, not hidden. Answers
are capped at 64 tokens (DSPy's answer format needs about 20; the 135M model otherwise
rambles for hundreds of tokens per call).
"""

import json
import sys
import time
import traceback
from typing import Literal


def main() -> None:
    import dspy

    config = json.loads(sys.argv[1])
    # engine="litellm": DSPy 3.4's default lm15 engine sends the token cap as
    # `max_completion_tokens`, which llama.cpp's server ignores (answers ran to 100+ tokens
    # and reflections to the context limit); LiteLLM sends `max_tokens`, which it honours
    lm = dspy.LM(f"openai/{config['model']}", api_base=config["base_url"], api_key="local",
                 cache=False, temperature=0.0, max_tokens=64, num_retries=0, engine="litellm")
    dspy.configure(lm=lm)
    Label = Literal[tuple(config["choices"])]  # type: ignore[misc]

    class Triage(dspy.Signature):
        ticket: str = dspy.InputField()
        label: Label = dspy.OutputField()  # type: ignore[valid-type]

    Triage.__doc__ = config["instruction"]
    train = [dspy.Example(ticket=r["text"], label=r["label"]).with_inputs("ticket") for r in config["train"]]
    val = [dspy.Example(ticket=r["text"], label=r["label"]).with_inputs("ticket") for r in config["val"]]
    calls = {"n": 0}

    def correct(example, prediction) -> float:
        return float(str(getattr(prediction, "label", "")).strip().lower() == example.label)

    def metric(example, prediction, trace=None, pred_name=None, pred_trace=None):
        calls["n"] += 1
        return correct(example, prediction)

    def accuracy(program) -> float:
        total = 0.0
        for ex in val:
            try:
                total += correct(ex, program(ticket=ex.ticket))
            except Exception:
                pass  # an unparsed answer scores 0, as DSPy's Evaluate does
        return total / len(val)

    budget, seed = int(config["budget"]), int(config["seed"])
    base = dspy.Predict(Triage)
    before = accuracy(base)
    for name in config["optimizers"]:
        calls["n"] = 0
        lm.history.clear()
        start = time.perf_counter()
        row = {"tool": "dspy", "optimizer": name, "budget": budget, "seed": seed, "before": before}
        try:
            program = compile_with(dspy, name, base, metric, train, val, budget, seed, lm)
            row["after"] = accuracy(program)
            row["status"] = "ok"
        except Exception as exc:
            row["after"] = None
            row["status"] = f"crashed: {type(exc).__name__}: {str(exc)[:200]}"
            row["traceback"] = traceback.format_exc(limit=3)[-600:]
        row["seconds"] = round(time.perf_counter() - start, 1)
        row["metric_calls"] = calls["n"]
        row["llm_calls"] = len(lm.history)
        row["tokens"] = sum(int((h.get("usage") or {}).get("total_tokens") or 0) for h in lm.history)
        print(json.dumps(row), flush=True)


def compile_with(dspy, name, base, metric, train, val, budget, seed, lm):
    """One optimizer at the budget (see module doc)."""
    program = base.deepcopy()
    if name == "zero-shot":
        return program
    if name == "BootstrapFewShot":
        opt = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=4, max_labeled_demos=4)
        return opt.compile(program, trainset=train)
    if name == "COPRO":
        depth = max(1, budget // (5 * len(train)))
        opt = dspy.COPRO(metric=metric, breadth=5, depth=depth, init_temperature=1.0)
        return opt.compile(program, trainset=train, eval_kwargs={"num_threads": 1, "display_progress": False})
    if name == "MIPROv2":
        trials = max(2, (budget - len(train)) // 10)
        opt = dspy.MIPROv2(metric=metric, auto=None, num_candidates=4, max_bootstrapped_demos=4,
                           max_labeled_demos=4, seed=seed, verbose=False, num_threads=1)
        return opt.compile(program, trainset=train, valset=val, num_trials=trials, minibatch=True,
                           minibatch_size=8, minibatch_full_eval_steps=max(2, trials // 2),
                           requires_permission_to_run=False)
    if name == "GEPA":
        opt = dspy.GEPA(metric=metric, max_metric_calls=budget, reflection_lm=lm, seed=seed, num_threads=1)
        return opt.compile(program, trainset=train, valset=val)
    raise ValueError(f"unknown optimizer {name!r}")


if __name__ == "__main__":
    main()
