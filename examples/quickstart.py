"""Quickstart: one workflow, a text parameter and a tensor, trained in the same step.

The workflow classifies short reviews. It has a text parameter (a keyword list that the
code consumes) and a numeric parameter (a tensor of weights). Each `opt.step()` sends
the keyword list to the LLM optimizer (the embedded local model, `tk.llm.default()`,
no network) with the text feedback, and the weights to Adam with their gradients; the
step report says what each solver did. The demo also writes a picture of the traced
graph and one of the run.

Run with `make demo` (or `.venv/bin/python examples/quickstart.py [--quick] [--out DIR]`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import tracekit as tk

REVIEWS = [
    ("great food and friendly staff", 1.0),
    ("awful service, cold soup", 0.0),
    ("lovely view, great wine", 1.0),
    ("terrible, slow and rude", 0.0),
    ("friendly and fast, tasty dishes", 1.0),
    ("rude waiter, awful noise", 0.0),
    ("delicious pasta, kind people", 1.0),
    ("cold and slow", 0.0),
]
NEGATIVE_CUES = {"awful", "terrible", "rude", "cold", "slow"}


@tk.bundle()
def features(text: str, positive_words: str) -> torch.Tensor:
    """Count positive keywords and negative cue words in a review."""
    words = [w.strip(",.") for w in text.lower().split()]
    keywords = {w.strip().lower() for w in positive_words.split(",") if w.strip()}
    positives = sum(w in keywords for w in words)
    negatives = sum(w in NEGATIVE_CUES for w in words)
    return torch.tensor([float(positives), float(negatives), 1.0])


@tk.bundle()
def classify(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Probability that the review is positive (a logistic model)."""
    return torch.sigmoid(x @ weights)


class ReviewClassifier(tk.Module):
    def __init__(self) -> None:
        self.positive_words = tk.param(
            "great, lovely", name="positive_words",
            description="a comma-separated list of single lowercase words, like: great, lovely")
        self.weights = tk.param(torch.zeros(3), name="weights")

    def forward(self, text: str) -> tk.Node:
        return classify(features(text, self.positive_words), self.weights)


def feedback_for(text: str, prob: float, target: float) -> str | None:
    """Text feedback for the keyword list on one review: None when it was classified right."""
    if (prob > 0.5) == bool(target):
        return None
    words = ", ".join(w.strip(",.") for w in text.lower().split())
    if target:
        return f"positive review scored {prob:.2f}, add some of its words to positive_words: {words}"
    return f"negative review scored {prob:.2f}, remove its words from positive_words: {words}"


def main(quick: bool = False, out_dir: str | Path = "quickstart_out", llm: Any = None) -> list[tk.StepReport]:
    """Run the demo; return the step reports. `llm=None` uses `tk.llm.default()`."""
    out = Path(out_dir)
    model = ReviewClassifier()
    print("Parameters:", {name: p.kind for name, p in model.named_parameters()})

    text, _ = REVIEWS[0]
    prob = model(text)
    print(f"\nP(positive | {text!r}) = {float(prob.data.detach()):.3f}")
    print("\nThe traced graph (calls on the path from the parameters to the output):")
    for call in tk.subgraph(prob).calls():
        print("  ", call.code_line())
    graph_picture = tk.render(prob, out / "graph.svg", title="quickstart: one review")
    print("   picture of the graph:", graph_picture)

    # One optimizer for both parameters: the text goes to the LLM optimizer, the tensor
    # to Adam. `llm=None` is the default backend: the embedded model, run locally.
    # `budget` caps the LLM prompt (in tokens): small prompts keep the local model quick.
    opt = tk.Optimizer(model.parameters(), llm=llm, numeric="adam", lr=0.5, budget=1000)
    steps = 2 if quick else 3
    print(f"\nTraining {steps} steps; each step sends the keyword list to the LLM optimizer and the weights\n"
          f"to Adam (the first LLM call starts the embedded model). Each step prints one line per parameter:\n"
          f"name: old -> new (solver) — why; `report[name].reason` holds the whole reason.")
    reports: list[tk.StepReport] = []
    records: list[dict[str, Any]] = []
    bar = tqdm(range(1, steps + 1), desc="training", unit="step")
    for step in bar:
        start = time.perf_counter()
        opt.zero_feedback()
        total, right = 0.0, 0
        for review, target in REVIEWS:
            p = model(review)
            loss = torch.nn.functional.binary_cross_entropy(p.data, torch.tensor(target))
            prob_value = float(p.data.detach())
            right += (prob_value > 0.5) == bool(target)
            total += float(loss.detach())
            opt.backward(p, tk.Feedback(loss=loss, text=feedback_for(review, prob_value, target)))
        report = opt.step()
        reports.append(report)
        # one line for the step, then one per parameter (tqdm.write keeps the bar intact)
        bar.write(f"\nstep {step}: accuracy before it {right / len(REVIEWS):.0%}, mean loss "
                  f"{total / len(REVIEWS):.3f}; {report.headline()}")
        bar.write(report.format(head=False))
        records.append({"step": step, "train_score": right / len(REVIEWS), "loss": total / len(REVIEWS),
                        "prompt_tokens": report.prompt_tokens, "completion_tokens": report.completion_tokens,
                        "cost": report.cost, "seconds": time.perf_counter() - start})
        bar.set_postfix(loss=f"{total / len(REVIEWS):.3f}", tokens=sum(r.tokens for r in reports))
    bar.close()

    with tk.no_trace():
        right = sum((float(model(r).detach()) > 0.5) == bool(t) for r, t in REVIEWS)
    print(f"\nAfter {steps} steps: accuracy {right / len(REVIEWS):.0%}")
    print("positive_words:", repr(model.positive_words.data))
    print("   (with no objective the text solver applies the first valid suggestion without testing\n"
          "    it; the embedded 135M model's suggestions are often poor. Pass objective= to test them,\n"
          "    or point TRACEKIT_LLM_BASE_URL / TRACEKIT_LLM_MODEL at a stronger model.)")
    print("weights:", [round(v, 3) for v in model.weights.data.tolist()])
    run_picture = tk.plot_run(records, out / "run.png", title="quickstart run")
    print("picture of the run:", run_picture)
    return reports


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 steps instead of 3 (used by the tests)")
    parser.add_argument("--out", default="quickstart_out", help="where the pictures go (default: quickstart_out)")
    args = parser.parse_args()
    main(args.quick, args.out)
