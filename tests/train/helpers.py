"""Scripted solvers and small workflows shared by the training tests (importable by
subprocesses and Ray workers: no pytest imports here)."""

from __future__ import annotations

import tracekit as tk
from tracekit.bundled import bundle
from tracekit.seam import UNCHANGED, ParamUpdate


class ListSolver:
    """Proposes, at its k-th step, the k-th value of a fixed list for each parameter.

    Its step counter is its state, so a resumed run proposes what the uninterrupted run
    would have proposed only if the optimizer state was restored."""

    def __init__(self, params, plan=None, name="scripted", **options):
        self.plan = plan or {}
        self.name = name
        self.calls = 0
        self.seen_feedback: list[str] = []

    def step(self, params, context):
        k = self.calls
        self.calls += 1
        for r in context.records(params):
            self.seen_feedback.append(r.feedback.describe())
        updates = []
        for p in params:
            name = context.name_of(p)
            values = self.plan.get(name, [])
            new = values[k] if k < len(values) else UNCHANGED
            updates.append(ParamUpdate(name, self.name, new_value=new))
        return updates

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def register_plan(route: str, plan: dict, solvers: list | None = None) -> None:
    """Register a ListSolver factory for a route; built solvers are appended to `solvers`."""

    def factory(params, **options):
        solver = ListSolver(params, plan=plan, name=f"scripted-{route}")
        if solvers is not None:
            solvers.append(solver)
        return solver

    tk.register_solver(route, factory)


@bundle()
def classify(text, keywords, threshold):
    """Label a text 'pos' when the share of its words found in the keyword list reaches the threshold."""
    words = text.lower().split()
    keys = {k.strip() for k in keywords.split(",") if k.strip()}
    share = sum(w in keys for w in words) / max(len(words), 1)
    return "pos" if share >= threshold else "neg"


class KeywordModel(tk.Module):
    """A text parameter (keywords), a number (threshold) and a categorical (fallback)."""

    def __init__(self, keywords="good", threshold=0.5):
        self.keywords = tk.param(keywords, name="keywords")
        self.threshold = tk.param(threshold, name="threshold", bounds=(0.0, 1.0))

    def forward(self, text):
        return classify(text, self.keywords, self.threshold)


DATA = [
    ("good day", "pos"), ("great food", "pos"), ("nice view", "pos"), ("lovely wine", "pos"),
    ("bad day", "neg"), ("awful food", "neg"), ("rude staff", "neg"), ("cold soup", "neg"),
]


def accuracy(prediction, example):
    """1 when the label is right, with text feedback when it is wrong."""
    _, label = example
    if prediction == label:
        return 1.0
    return 0.0, f"predicted {prediction}, expected {label}"
