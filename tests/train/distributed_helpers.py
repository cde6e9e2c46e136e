"""Workflows, metrics and a scripted LLM for the out-of-process training tests (importable
by pool processes and Ray workers: no pytest imports here)."""

from __future__ import annotations

import json
import os
import re
import signal

import torch

import tracekit as tk
from tracekit.bundled import bundle


@bundle()
def label_text(text, keywords, threshold):
    """Label a text 'pos' when the share of its words found in the keyword list reaches the threshold."""
    words = text.lower().split()
    keys = {k.strip() for k in keywords.split(",") if k.strip()}
    share = sum(w in keys for w in words) / max(len(words), 1)
    return "pos" if share >= threshold else "neg"


@bundle()
def rate(features, w):
    """A linear rating of the example's features."""
    return (w * torch.tensor(features, dtype=torch.float64)).sum()


class Mixed(tk.Module):
    """A text parameter, a tensor parameter (float64) and an untrained number shared by
    every example's trace. `boom`: inputs that raise; `kill`: inputs that kill the worker
    process running them (never the driver, whose pid is recorded at construction)."""

    def __init__(self, boom=(), kill=()):
        self.keywords = tk.param("good", name="keywords")
        self.w = tk.param(torch.tensor([0.5, -0.25, 0.125], dtype=torch.float64), name="w")
        self.threshold = tk.param(0.5, name="threshold")
        self.boom = set(boom)
        self.kill = set(kill)
        self.driver = os.getpid()

    def forward(self, x):
        if x["text"] in self.boom:
            raise ValueError(f"cannot read {x['text']!r}")
        if x["text"] in self.kill and os.getpid() != self.driver:
            os.kill(os.getpid(), signal.SIGKILL)
        return label_text(x["text"], self.keywords, self.threshold), rate(x["features"], self.w)


def mixed_call(workflow, example):
    """Runs an example; the workflow's two outputs become one traced output."""
    label, rating = workflow(example)
    return tk.bundle()(_pair)(label, rating)


def _pair(label, rating):
    """Pair the label with the rating."""
    return (label, rating)


def mixed_metric(prediction, example):
    """Accuracy of the label, text feedback when wrong, a squared loss on the rating."""
    label, rating = prediction
    right = label == example["label"]
    loss = (rating - example["target"]) ** 2
    return tk.Score(1.0 if right else 0.0, None if right else f"predicted {label}, expected {example['label']}",
                    loss)


def mixed_data(n=8):
    words = ["good day", "great food", "nice view", "lovely wine", "bad day", "awful food", "rude staff",
             "cold soup", "good food", "great view"]
    data = []
    for i in range(n):
        text = words[i % len(words)]
        data.append({"text": text, "features": [1.0, float(i), float(i % 3)], "target": 0.1 * i,
                     "label": "pos" if i % len(words) < 4 or i % len(words) >= 8 else "neg"})
    return data


class ScriptedLLM:
    """Answers each prompt with the next keyword list and records the prompts."""

    def __init__(self):
        self.prompts: list[str] = []
        self.plan = ["good, great", "good, great, nice, lovely", "good, great, nice, lovely, food"]

    def __call__(self, messages, **kwargs):
        self.prompts.append("\n".join(m["content"] for m in messages))
        k = min(len(self.prompts) - 1, len(self.plan) - 1)
        return json.dumps({"reasoning": "add the missed words", "suggestion": {"keywords": self.plan[k]}})


_AUTO = re.compile(r"\b(const|label_text_|rate_|_pair_|output)\d+(_\d+)?\b")


def canonical(prompt: str) -> str:
    """The prompt with names derived from node counters (const17, rate_42) numbered by
    first appearance: they depend on the process, not on what the optimizer sees."""
    seen: dict[str, str] = {}

    def sub(m):
        return seen.setdefault(m.group(0), f"{m.group(1)}#{len(seen)}")

    return _AUTO.sub(sub, prompt)


def square_or_die(i):
    """i*i; item 3 kills the process running it."""
    if i == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return i * i


_backend = None


def _echo(messages, **kwargs):
    return "a rephrased text"


def asking_backend():
    """One LLM backend per process (made on first use: backends are not shipped)."""
    global _backend
    if _backend is None:
        _backend = tk.llm.as_backend(_echo, name="echo")
    return _backend


_priced = None


def priced_backend():
    """A backend whose every token costs $0.001 (one per process, as `asking_backend`)."""
    global _priced
    if _priced is None:
        _priced = tk.llm.as_backend(_echo, name="priced", model="priced", prices={"priced": (1000.0, 1000.0)})
    return _priced


class PricedAsker(Mixed):
    """`Mixed`, asking a priced LLM about each text first (workers' LLM cost)."""

    def forward(self, x):
        priced_backend()([{"role": "user", "content": x["text"]}])
        return super().forward(x)


class Asker(Mixed):
    """`Mixed`, asking an LLM about each text first (to count workers' LLM usage)."""

    def forward(self, x):
        asking_backend()([{"role": "user", "content": x["text"]}])
        return super().forward(x)


class KillOnce(Mixed):
    """`Mixed` whose `kill` inputs kill the first worker process that runs them (a marker
    file says it happened): the rerun of the task succeeds."""

    def __init__(self, marker, kill=()):
        super().__init__(kill=kill)
        self.marker = str(marker)

    def forward(self, x):
        if x["text"] in self.kill and os.getpid() != self.driver and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return label_text(x["text"], self.keywords, self.threshold), rate(x["features"], self.w)
