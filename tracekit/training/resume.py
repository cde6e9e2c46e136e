"""A Trainer's run on disk: what each step records (history, run log, checkpoint, best
values), how a checkpoint is loaded to resume a run, and the files a finished run leaves.

Functions of a `tracekit.training.trainer.Trainer` (its `_load`, `_record` and `_finish`
call them); this module never imports the trainer (the trainer imports it).
"""

from __future__ import annotations

import random
import time
from typing import Any

from tracekit.errors import StateDictError
from tracekit.llm.accounting import process_scope
from tracekit.training import checkpoint as ckpt
from tracekit.training import front as _front
from tracekit.training.budget import RunBudget
from tracekit.training.results import TrainResult, oriented_scores

#: the trainer's type, named in annotations only (this module never imports the trainer)
Trainer = Any

#: the state entries a checkpoint keeps
STATE_KEYS = ("step", "epoch", "position", "order", "stop_reason", "best_score", "best_step", "bad_steps",
              "best_params", "elapsed")


def start(trainer: Trainer) -> dict[str, Any]:
    """The run's first state: the checkpoint's when resuming (`trainer._load`), else a fresh
    start: seeds set, the initial validation run and recorded as step 0."""
    saved = ckpt.load_checkpoint(trainer.run_dir) if (trainer.resume and trainer.run_dir) else None
    if saved is not None:
        return trainer._load(saved)
    ckpt.seed_everything(trainer.seed)
    trainer.rng = random.Random(trainer.seed)
    _front.start(trainer)
    trainer.budget.load_state_dict({})
    first = len(trainer.validation_set)
    if trainer.budget.max_metric_calls is not None and trainer.budget.max_metric_calls < first:
        raise ValueError(f"max_metric_calls={trainer.budget.max_metric_calls} is less than one validation "
                         f"({first} examples): raise it, or validate on fewer examples (val=...)")
    began = time.perf_counter()
    with process_scope() as in_process:  # the workflows' LLM calls in this process
        initial = trainer._validate()
    val_scores = _front.observe(trainer, 0, initial)  # objectives=: the means; the front's first member
    if trainer.search is not None:
        trainer.search.start(initial)
    state: dict[str, Any] = {
        "step": 0, "epoch": 0, "position": 0, "order": trainer._shuffled(), "stop_reason": None,
        "best_score": initial.score, "best_step": 0, "bad_steps": 0,
        "best_params": ckpt.snapshot(trainer.named_params), "elapsed": 0.0,
        "best_val": oriented_scores(trainer, initial),
    }
    record = {"step": 0, "epoch": 0, "train_score": None, "val_score": initial.score,
              "best_score": initial.score, "improved": None, "reverted": False,
              "val_errors": initial.errors, "params": ckpt.plain_values(trainer.named_params),
              "changes": [], **in_process.report_fields(),
              "seconds": time.perf_counter() - began, "time": time.time()}
    if trainer.objectives is not None:  # the directions, for `tracekit show` and plot_run
        record.update(objectives=trainer.objectives.directions, val_scores=val_scores)
    if trainer._remote is not None:  # the initial validation's LLM calls on the workers
        workers = trainer._remote.take_usage()
        record.update((in_process + workers).report_fields())
        record.update(worker_usage=workers.report_fields(), lost_examples=trainer._remote.take_lost())
    trainer.budget.llm_cost = record["cost"]  # the initial validation counts against max_llm_cost
    state["elapsed"] = record["seconds"]
    record["spent_metric_calls"] = trainer.budget.metric_calls
    if trainer.search is not None:
        record.update(strategy=trainer.strategy.name, candidate=trainer.search.best().lineage(), accepted=True)
    trainer.budget.seconds = record["seconds"]
    trainer.history = []
    if trainer.run_dir is not None:
        ckpt.write_log(trainer.run_dir, [])
    trainer._record(state, record)
    return state


def load(trainer: Trainer, saved: dict[str, Any]) -> dict[str, Any]:
    """Restore parameters, optimizer states, RNGs, history and the data position. Every
    part is checked first; a damaged checkpoint or one of another run raises
    StateDictError and leaves the parameters, the optimizer and the RNGs as they were."""
    where = f"checkpoint {trainer.run_dir / ckpt.CHECKPOINT_FILE}"
    ckpt.check_checkpoint(saved, where)
    kinds = {name: p.kind for name, p in trainer.named_params}
    if "kinds" in saved and saved["kinds"] != kinds:
        raise StateDictError(
            f"{where} was written by another run (training {saved['kinds']}; this run trains {kinds}); "
            f"use another run_dir, or resume=False to start over")
    if any(not 0 <= i < len(trainer.train_set) for i in saved["order"]) or \
            saved["position"] > len(saved["order"]):
        raise StateDictError(f"{where} refers to examples outside this training set "
                             f"({len(trainer.train_set)} examples); it was written by another run")
    staged = ckpt.stage(trainer.named_params, saved["params"], f"{where} params", strict=True)
    best = ckpt.stage(trainer.named_params, saved["best_params"], f"{where} best_params", strict=True)
    rng = random.Random(trainer.seed)
    set_rngs = ckpt.stage_rng_state(rng, saved["rng"])
    set_pool = None
    if trainer.search is not None:
        set_pool = trainer.search.load(saved.get("pool"), where)  # checked before anything is set
    elif saved.get("pool") is not None:
        raise StateDictError(f"{where} holds a pool search ({saved['pool'].get('strategy')!r}); "
                             f"resume it with the same strategy=, or use another run_dir")
    set_front = _front.load(trainer, saved, where)  # checked before anything is set
    budget = RunBudget()
    budget.load_state_dict(saved.get("budget") or {"seconds": saved["elapsed"]})  # checked first
    if saved.get("optimizer"):
        trainer.optimizer.load_state_dict(saved["optimizer"])  # all or nothing
    for p, value in staged:
        p.write(value)  # validated when staged
    if set_pool is not None:
        set_pool()
    set_front()
    trainer.rng = rng
    for setter in set_rngs:
        setter()
    trainer.history = list(saved["history"])
    ckpt.write_log(trainer.run_dir, trainer.history)  # drop records written after the checkpoint
    state = {k: saved[k] for k in STATE_KEYS if k != "best_params"}
    state["best_params"] = {name: value for (name, _), (_, value) in zip(trainer.named_params, best)}
    state["best_val"] = _best_val(saved.get("best_val"), trainer)
    if state["stop_reason"] and not state["stop_reason"].startswith("early stopping"):
        state["stop_reason"] = None  # a step, epoch or budget limit: the new limits decide
    trainer.budget.load_state_dict(budget.state_dict())
    return state


def _best_val(saved: Any, trainer: Trainer) -> list[float] | None:
    """The best parameters' per-example validation scores of a checkpoint; None (the next
    step validates in full) when absent or not one number per validation example."""
    size = len(trainer.validation_set)
    if (isinstance(saved, list) and len(saved) == size
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in saved)):
        return [float(v) for v in saved]
    return None


def record_step(trainer: Trainer, state: dict[str, Any], record: dict[str, Any]) -> None:
    """Append to the history and the run log, then checkpoint everything atomically."""
    trainer.history.append(ckpt.jsonable(record))
    if trainer.run_dir is None:
        return
    ckpt.append_log(trainer.run_dir, record)
    ckpt.save_checkpoint(trainer.run_dir, {
        **{k: state[k] for k in STATE_KEYS},
        "best_val": state.get("best_val"),
        "seed": trainer.seed,
        "kinds": {name: p.kind for name, p in trainer.named_params},
        "params": ckpt.snapshot(trainer.named_params),
        "optimizer": trainer.optimizer.state_dict(),
        "rng": ckpt.rng_state(trainer.rng),
        "history": trainer.history,
        "budget": trainer.budget.state_dict(),
        **({"pool": trainer.search.state_dict()} if trainer.search is not None else {}),
        **({"objectives": trainer.objectives.directions, "front": trainer.front.state_dict()}
           if trainer.objectives is not None else {}),
    })
    ckpt.write_json(trainer.run_dir / ckpt.BEST_FILE, state["best_params"])


def finish(trainer: Trainer, state: dict[str, Any]) -> TrainResult:
    """The run's summary; the run log's last record and the checkpoint say why the run
    stopped, and `summary.json` holds the summary (when the run has a directory)."""
    h = trainer.history
    result = TrainResult(
        initial_score=h[0]["val_score"] if h else None, best_score=state["best_score"],
        final_score=next((r["val_score"] for r in reversed(h) if r.get("val_score") is not None), None),
        best_step=state["best_step"],
        steps=state["step"], stop_reason=state["stop_reason"],
        best_params=ckpt.plain_values(trainer.named_params), history=list(h),
        llm_calls=sum(r.get("llm_calls", 0) for r in h),
        prompt_tokens=sum(r.get("prompt_tokens", 0) for r in h),
        completion_tokens=sum(r.get("completion_tokens", 0) for r in h),
        cost=sum(r.get("cost", 0.0) for r in h), seconds=state["elapsed"],
        higher_is_better=trainer.higher_is_better,
        run_dir=str(trainer.run_dir) if trainer.run_dir is not None else None,
        strategy=trainer.strategy.name,
        budget={"spent": trainer.budget.spent(), "left": trainer.budget.left()},
        **(trainer.search.summary() if trainer.search is not None else {}),
        **({"objectives": trainer.objectives.directions} if trainer.objectives is not None else {}))
    result.front = result.run_front(trainer.front.to_list() if trainer.front is not None else None)
    if trainer.history:  # the run log's last record says why the run stopped
        trainer.history[-1]["stop_reason"] = state["stop_reason"]
        result.history[-1] = trainer.history[-1]
        if trainer.run_dir is not None:
            ckpt.write_log(trainer.run_dir, trainer.history)
    if trainer.run_dir is not None:
        saved = ckpt.load_checkpoint(trainer.run_dir) or {}
        saved.pop("format", None)
        saved["stop_reason"] = state["stop_reason"]
        ckpt.save_checkpoint(trainer.run_dir, saved)
        ckpt.write_json(trainer.run_dir / ckpt.SUMMARY_FILE, result.to_dict())
    return result
