"""The progress bar of `Trainer.fit` (tqdm): steps done, and the last scores, tokens and
budgets as its postfix. Lines printed during a run go through `tqdm.write` so that they
do not cut through the bar (see `tracekit.training.callbacks.StepPrinter`)."""

from __future__ import annotations

from typing import Any

from tracekit.training.results import _fmt

#: the trainer's type, named in annotations only (the trainer imports this module)
Trainer = Any


def bar(trainer: Trainer, state: dict[str, Any]) -> Any:
    """A tqdm bar for the run (None with `progress=False`)."""
    if not trainer.progress:
        return None
    from tqdm.auto import tqdm

    made = tqdm(total=trainer.total_steps(), initial=state["step"], desc="training", unit="step")
    made.set_postfix_str(postfix(trainer))
    return made


def postfix(trainer: Trainer) -> str:
    """The bar's postfix: the last step's scores, the tokens so far and the budgets."""
    if not trainer.history:
        return ""
    last = trainer.history[-1]
    parts = [f"val={_fmt(last['val_score'])}", f"best={_fmt(last['best_score'])}"]
    if last.get("train_score") is not None:
        parts.insert(0, f"train={_fmt(last['train_score'])}")
    tokens = sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in trainer.history)
    if tokens:
        parts.append(f"tokens={tokens}")
    parts.append(trainer.budget.postfix())
    return " ".join(parts)
