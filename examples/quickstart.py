"""Quickstart: trace a small workflow, look at its graph, send feedback, take a step.

The workflow classifies short reviews. It has a text parameter (a keyword list that the
code consumes) and a numeric parameter (a tensor of weights that gets real gradients).
Run with `make demo` (or `.venv/bin/python examples/quickstart.py [--quick]`).
"""

from __future__ import annotations

import argparse

import torch

import tracekit as tk

REVIEWS = [
    ("great food and friendly staff", 1.0),
    ("awful service, cold soup", 0.0),
    ("lovely view, great wine", 1.0),
    ("terrible, slow and rude", 0.0),
    ("friendly and fast, lovely", 1.0),
    ("rude waiter, awful noise", 0.0),
]


@tk.bundle()
def features(text: str, positive_words: str) -> torch.Tensor:
    """Count positive keywords and negative cue words in a review."""
    words = [w.strip(",.") for w in text.lower().split()]
    keywords = {w.strip() for w in positive_words.split(",") if w.strip()}
    positives = sum(w in keywords for w in words)
    negatives = sum(w in {"awful", "terrible", "rude", "cold", "slow"} for w in words)
    return torch.tensor([float(positives), float(negatives), 1.0])


@tk.bundle()
def classify(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Probability that the review is positive (a logistic model)."""
    return torch.sigmoid(x @ weights)


class ReviewClassifier(tk.Module):
    def __init__(self) -> None:
        self.positive_words = tk.param("great, lovely", name="positive_words",
                                       description="comma-separated words that signal a positive review")
        self.weights = tk.param(torch.zeros(3), name="weights")

    def forward(self, text: str) -> tk.Node:
        return classify(features(text, self.positive_words), self.weights)


def main(quick: bool = False) -> None:
    model = ReviewClassifier()
    print("Parameters:", {name: p.kind for name, p in model.named_parameters()})

    text, label = REVIEWS[0]
    prob = model(text)
    print(f"\nP(positive | {text!r}) = {float(prob.data.detach()):.3f}")

    print("\nThe traced graph (calls on the path from parameters to the output):")
    graph = tk.subgraph(prob)
    for call in graph.calls():
        print("  ", call.code_line())
    print("  ", graph)

    loss = torch.nn.functional.binary_cross_entropy(prob.data, torch.tensor(label))
    opt = tk.Optimizer(model.parameters(), numeric="adam", lr=0.5)
    opt.zero_feedback()
    opt.backward(prob, tk.Feedback(loss=loss, text="Should be clearly positive."))
    print("\nFeedback reached:")
    for name, p in model.named_parameters():
        grad = p.data.grad.tolist() if p.is_tensor and p.data.grad is not None else None
        print(f"   {name}: {len(p.feedback)} record(s)" + (f", gradient {grad}" if grad else ""))

    # Train the numeric weights by gradients on all reviews.
    opt = tk.Optimizer([model.weights], numeric="adam", lr=0.3)
    epochs = 5 if quick else 30
    for _ in range(epochs):
        opt.zero_feedback()
        total = 0.0
        for review, target in REVIEWS:
            p = model(review)
            loss = torch.nn.functional.binary_cross_entropy(p.data, torch.tensor(target))
            opt.backward(p, loss)
            total += float(loss.detach())
        try:
            opt.step()
        except tk.MissingSolverError as exc:
            print("\n", exc)
            return
    accuracy = sum((float(model(r).data.detach()) > 0.5) == bool(t) for r, t in REVIEWS) / len(REVIEWS)
    print(f"\nAfter {epochs} gradient steps: mean loss {total / len(REVIEWS):.3f}, accuracy {accuracy:.0%}")
    print("weights:", [round(v, 3) for v in model.weights.data.tolist()])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps (used by the tests)")
    main(parser.parse_args().quick)
