"""Render the pictures shown in the docs into docs/img/.

    .venv/bin/python docs/make_pictures.py            # all pictures
    .venv/bin/python docs/make_pictures.py --out DIR  # somewhere else (tests use this)
    .venv/bin/python docs/make_pictures.py --out DIR --png  # PNG graphs, to look at

Graphs are drawn with Graphviz `dot` when it is installed (the committed SVGs were),
and one picture is always drawn with the matplotlib fallback for comparison. The run
plot comes from a real short training run of the quickstart classifier: its weights
learn by gradients every step, its keyword list is rewritten by a scripted LLM every
few steps (a deterministic stand-in for a real model, so the picture is reproducible).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import torch

import tracekit as tk
from tracekit.pictures.graph_picture import render
from tracekit.pictures.run_plot import plot_run

HERE = Path(__file__).resolve().parent
GRAPH_SUFFIX = ".svg"  # --png switches the Graphviz pictures to PNG (to look at them)

# Half of the positive reviews use words the initial keyword list lacks, and half of the
# negative ones have no cue word: only a better keyword list separates them.
REVIEWS = [
    ("great food and friendly staff", 1.0),
    ("awful service, cold soup", 0.0),
    ("friendly and fast", 1.0),
    ("overpriced and noisy", 0.0),
    ("tasty dishes, kind people", 1.0),
    ("never again", 0.0),
    ("lovely view, great wine", 1.0),
    ("terrible, slow and rude", 0.0),
    # validation
    ("kind and tasty", 1.0),
    ("noisy, overpriced", 0.0),
    ("friendly people", 1.0),
    ("cold and bland", 0.0),
]


@tk.bundle()
def features(text: str, positive_words: str) -> torch.Tensor:
    """Count positive keywords and negative cue words in a review."""
    words = [w.strip(",.") for w in text.lower().split()]
    keywords = {w.strip() for w in positive_words.split(",") if w.strip()}
    positives = sum(w in keywords for w in words)
    negatives = sum(w in {"awful", "terrible", "rude", "cold", "slow", "bland"} for w in words)
    return torch.tensor([float(positives), float(negatives), 1.0])


@tk.bundle()
def classify(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Probability that the review is positive (a logistic model)."""
    return torch.sigmoid(x @ weights)


@tk.bundle()
def parse_rating(text: str) -> int:
    """The star rating written at the start of a review, e.g. '4 stars, great'."""
    return int(text.split()[0])


class ReviewClassifier(tk.Module):
    def __init__(self) -> None:
        self.positive_words = tk.param("great, lovely", name="positive_words",
                                       description="comma-separated words that signal a positive review")
        self.weights = tk.param(torch.zeros(3), name="weights")

    def forward(self, text: str) -> tk.Node:
        return classify(features(tk.node(text, name="review"), self.positive_words), self.weights)


def quickstart_graph(out: Path) -> list[Path]:
    model = ReviewClassifier()
    prob = model("great food and friendly staff")
    return [render(prob, out / ("quickstart_graph" + GRAPH_SUFFIX), title="ReviewClassifier: one traced call")]


def exception_graph(out: Path) -> list[Path]:
    model = ReviewClassifier()
    prob = model("great food")
    rating = parse_rating(tk.node("five stars, great food", name="raw_review"))  # raises ValueError
    blended = rating * 0.2 + prob  # receives the exception node: passes the error on
    return [render(blended, out / ("exception_graph" + GRAPH_SUFFIX), title="An exception inside a bundle"),
            render(blended, out / "exception_graph_matplotlib.png", engine="matplotlib",
                   title="The same graph, matplotlib fallback")]


def capped_graph(out: Path) -> list[Path]:
    a = tk.param(1.0, name="a")
    b = tk.param(0.5, name="b")
    x = a
    for i in range(200):
        x = x * b + tk.node(float(i), name=f"c{i}") if i % 2 else x - a
    return [render(x, out / ("capped_graph" + GRAPH_SUFFIX), max_nodes=24,
                   title="A 200-step chain drawn with max_nodes=24")]


def scripted_llm(messages: list[dict], **kwargs: object) -> str:
    """A stand-in LLM: adds one positive word from the training reviews each time."""
    prompt = messages[-1]["content"]
    current = re.search(r"great, lovely[^\"\n]*", prompt)
    words = [w.strip() for w in (current.group(0) if current else "great, lovely").split(",")]
    for extra in ("friendly", "tasty", "kind", "fast"):
        if extra not in words:
            words.append(extra)
            break
    return json.dumps({"reasoning": "Positive reviews use words the list does not have yet.",
                       "suggestion": {"positive_words": ", ".join(words)}})


def run_log(path: Path, steps: int = 24) -> Path:
    """Train the classifier and write one JSON record per step (the run-log format)."""
    torch.manual_seed(0)
    model = ReviewClassifier()
    numeric = tk.Optimizer([model.weights], numeric="adam", lr=0.25)
    text = tk.Optimizer([model.positive_words], llm=tk.llm.CallableBackend(scripted_llm))
    train, val = REVIEWS[:8], REVIEWS[8:]

    def accuracy(data: list[tuple[str, float]]) -> float:
        with tk.no_trace(), torch.no_grad():
            return sum((float(model(t)) > 0.5) == (y > 0.5) for t, y in data) / len(data)

    with open(path, "w", encoding="utf-8") as fh:
        for step in range(steps):
            numeric.zero_feedback()
            loss_total = 0.0
            for review, label in train:
                prob = model(review)
                loss = torch.nn.functional.binary_cross_entropy(prob.data, torch.tensor(label))
                numeric.backward(prob, loss)
                loss_total += float(loss.detach())
            numeric.step()
            tokens = cost = 0.0
            if step % 6 == 5 and accuracy(train) < 1.0:  # every few steps the LLM rewrites the keyword list
                text.zero_feedback()
                review, label = next((t, y) for t, y in train if (float(model(t).data.detach()) > 0.5) != (y > 0.5))
                prob = model(review)
                kind = "positive" if label > 0.5 else "negative"
                text.backward(prob, f"'{review}' is a {kind} review but scored {float(prob.data.detach()):.2f}")
                report = text.step()
                tokens, cost = report.tokens, report.cost
            record = {"step": step, "train_loss": loss_total / len(train),
                      "train_score": accuracy(train), "tokens": tokens, "cost": cost}
            if step % 3 == 2:
                record["val_score"] = accuracy(val)
            fh.write(json.dumps(record) + "\n")
    return path


def run_plot(out: Path) -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        log = run_log(Path(tmp) / "run.jsonl")
        records = [json.loads(line) for line in log.read_text().splitlines()]
        return [plot_run(records, out / "run.png", title="ReviewClassifier training run", dpi=110)]


def main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for make in (quickstart_graph, exception_graph, capped_graph, run_plot):
        written += make(out)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "img")
    parser.add_argument("--png", action="store_true", help="write the Graphviz pictures as PNG")
    args = parser.parse_args()
    if args.png:
        GRAPH_SUFFIX = ".png"
    for p in main(args.out):
        print(p)
