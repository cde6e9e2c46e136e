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


# --- a simulated proposer for search strategies (also used by benchmarks/search.py) --------
class SubsetProposer:
    """A scripted 'LLM optimizer' for a workflow of bit-string modules: each step it edits
    one module; each unsolved example of it becomes solved with probability `p`, each
    solved one breaks with probability `q`. `targeted=True` (a reflecting proposer) edits
    the module of an example the minibatch feedback reports as failed; otherwise a random
    module. Model-free, so a search strategy's effect is measured independently of model
    strength. Its random state is its solver state (a resumed run proposes the same)."""

    def __init__(self, params, p=0.3, q=0.15, seed=0, name="subset-proposer", cost=0.0,
                 targeted=False, width=5, **options):
        import random

        self.p, self.q, self.name, self.cost = p, q, name, cost
        self.targeted, self.width = targeted, width
        self.rng = random.Random(seed)

    def _failing(self, params, context):
        import re

        failing = set()
        for r in context.records(params):
            text = r.feedback.describe()
            failing |= {int(m) for m in re.findall(r"example (\d+): [^\n]*score 0\b", text)}
        return sorted(failing)

    def step(self, params, context):
        from tracekit.llm.accounting import Usage

        failing = self._failing(params, context) if self.targeted else []
        target = (self.rng.choice(failing) // self.width if failing else self.rng.randrange(len(params)))
        updates = []
        for i, p in enumerate(params):
            name = context.name_of(p)
            if i != target:
                updates.append(ParamUpdate(name, self.name, new_value=UNCHANGED))
                continue
            bits = "".join(("1" if self.rng.random() < self.p else "0") if b == "0" else
                           ("0" if self.rng.random() < self.q else "1") for b in p.raw)
            info = {"llm_usage": Usage(calls=1, cost=self.cost)} if self.cost else {}
            updates.append(ParamUpdate(name, self.name, new_value=bits, info=info))
        return updates

    def state_dict(self):
        return {"rng": [list(x) if isinstance(x, tuple) else x for x in self.rng.getstate()]}

    def load_state_dict(self, state):
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


def register_subset_proposer(p=0.3, q=0.15, seed=0, cost=0.0, targeted=False, width=5):
    """Register a SubsetProposer for the text route."""
    tk.register_solver("text", lambda params, **options: SubsetProposer(
        params, p, q, seed, cost=cost, targeted=targeted, width=width))


@bundle()
def solved(index, width, *modules):
    """'ok' when the bit of example `index` is set in its module, else 'fail'."""
    return "ok" if modules[index // width][index % width] == "1" else "fail"


class ModulesModel(tk.Module):
    """`n` text parameters of `width` bits each: example i is solved by bit i % width of
    module i // width (independent modules, so merges can combine them)."""

    def __init__(self, n=4, width=5, start=None):
        import random

        rng = random.Random(start)
        for k in range(n):
            bits = "".join("1" if start is not None and rng.random() < 0.3 else "0" for _ in range(width))
            setattr(self, f"m{k}", tk.param(bits, name=f"m{k}", description="bits"))
        self.n, self.width = n, width

    def forward(self, index):
        return solved(index, self.width, *[getattr(self, f"m{k}") for k in range(self.n)])


def solved_metric(prediction, example):
    """1 when the example is solved."""
    return 1.0 if prediction == "ok" else (0.0, "not solved")
