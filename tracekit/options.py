"""What `tk.Optimizer` accepts, in one place: each route's option names, and the checks
run when the optimizer is built (and by `add_param_group`), as `torch.optim` does.

Options are given to `tk.Optimizer(..., **options)` or per param group, and each route's
solver reads its own from the group (the gradient solver `lr`, `numeric`, `weight_decay`,
...; SPSA the `spsa_*` options; Bayesian search `sampler`, `trials_per_step`,
`search_seed`; the LLM optimizer `n_candidates`, `budget`, ...). A key that no route
reads, an unknown `numeric` optimizer or `sampler`, a negative or non-finite `lr`, an
empty parameter list or a parameter given twice raise `InvalidOptionError` (a
`ValueError`) before anything runs, naming the argument and what is accepted; a solver
registered with `tk.register_solver(route, factory, options=[...])` adds its own names.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from tracekit.errors import InvalidOptionError
from tracekit.nodes import ParameterNode, _is_tensor

# Keywords of `solvers.gradient.GradientOptimizer` accepted as options (the gradient route
# passes these through; `numeric`, `lr` and `numeric_options` are read separately).
GRADIENT_OPTIONS = (
    "weight_decay", "decoupled_weight_decay", "momentum", "nesterov", "dampening", "betas", "eps",
    "clip_grad_norm", "clip_grad_value", "schedule", "total_steps", "warmup_steps",
    "final_lr_ratio", "device", "fused", "lion_backend", "check_finite",
)

# SPSA options of the zeroth-order route: option name -> keyword of `solvers.gradient.SPSA`.
SPSA_OPTIONS = {"spsa_a": "a", "spsa_c": "c", "spsa_alpha": "alpha", "spsa_gamma": "gamma",
                "spsa_A": "A", "spsa_samples": "samples", "spsa_guarded": "guarded",
                "spsa_max_evals": "max_evals", "spsa_seed": "seed"}

# Options of the bayesian route (`tracekit.routes.bayesian`, on `solvers.search`), with their
# defaults: the Optuna sampler ("tpe" | "cmaes" | "gp" | "random" | "qmc" | a sampler
# instance), how many new trials a step scores with `objective=`, and the sampler's seed.
SEARCH_DEFAULTS: dict[str, Any] = {"sampler": "tpe", "trials_per_step": 4, "search_seed": 0}

# Keywords of `solvers.text.TextOptimizer` accepted as options of the text route.
TEXT_OPTIONS = ("budget", "n_candidates", "temperatures", "seed", "max_reasks", "memory_size",
                "max_workers", "max_tokens", "max_text_chars", "min_improvement", "instruction",
                "use_structured", "system", "constrain_code", "constrain_text", "avoid_tried",
                "explore")

# Every option name a built-in route reads, by route.
ROUTE_OPTIONS: dict[str, tuple[str, ...]] = {
    "gradient": ("numeric", "lr", "numeric_options", *GRADIENT_OPTIONS),
    "zeroth_order": tuple(SPSA_OPTIONS),
    "bayesian": tuple(SEARCH_DEFAULTS),
    # `prompt_tokens` is an alias of `budget`; `objective` in a param group overrides the
    # Optimizer's objective for that group's text solver
    "text": (*TEXT_OPTIONS, "prompt_tokens", "objective"),
    # a number with text-only feedback: its text route (no signal yet) reads the text options
    "bracket": (),
    "demos": ("demo_trials", "seed"),
}

DEFAULT_NUMERIC = "adam"  # tk.Optimizer's default `numeric`
_NUMERIC_HELP = ('"sgd", "adam", "adamw", "lion", a torch.optim optimizer object built over the '
                 'tensors, or a factory f(param_groups, lr=...) returning one')


def accepted_options() -> set[str]:
    """Every option name some route's solver reads (built-in and registered ones)."""
    from tracekit.seam import registered_options

    names = {name for names in ROUTE_OPTIONS.values() for name in names}
    for extra in registered_options().values():
        names.update(extra)
    return names


def check_options(options: Mapping[str, Any], where: str = "") -> None:
    """Refuse unknown option names and bad `lr` / `numeric` values, naming what is accepted.

    `where` says which argument is checked (e.g. "in param group 1") for the message."""
    at = f" {where}" if where else ""
    accepted = accepted_options()
    unknown = [key for key in options if key not in accepted]
    if unknown:
        hints = [f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)
                 for key in unknown
                 for close in [difflib.get_close_matches(str(key), sorted(accepted), n=1)]]
        by_route = "; ".join(f"{route} route: {', '.join(names)}"
                             for route, names in ROUTE_OPTIONS.items())
        raise InvalidOptionError(
            f"tk.Optimizer got unknown option(s) {', '.join(hints)}{at}. Accepted options: "
            f"{by_route}. A solver registered with tk.register_solver(route, factory, "
            f"options=[...]) adds its own names.")
    if "lr" in options:
        check_lr(options["lr"], where)
    if "numeric" in options:
        check_numeric(options["numeric"], where)
    if any(key in options for key in SEARCH_DEFAULTS):
        check_search(options, where)


def check_lr(lr: Any, where: str = "") -> None:
    """A learning rate is a finite number >= 0 (a one-element tensor is accepted too)."""
    at = f" {where}" if where else ""
    is_number = isinstance(lr, numbers.Real) and not isinstance(lr, bool)
    if not is_number and not (_is_tensor(lr) and lr.numel() == 1):
        raise InvalidOptionError(f"lr{at} must be a finite number >= 0, got {type(lr).__name__} "
                                 f"{lr!r}")
    value = float(lr)
    if not math.isfinite(value) or value < 0:
        raise InvalidOptionError(f"lr{at} must be a finite number >= 0, got {value!r}")


def check_numeric(numeric: Any, where: str = "") -> None:
    """`numeric` names a known gradient optimizer, or is an optimizer object or a factory."""
    at = f" {where}" if where else ""
    if isinstance(numeric, str):
        if numeric.lower() == DEFAULT_NUMERIC:
            return  # the default: known without loading torch for a text-only workflow
        from solvers.gradient.optimizer import ALGORITHMS

        if numeric.lower() not in ALGORITHMS:
            close = difflib.get_close_matches(numeric.lower(), ALGORITHMS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidOptionError(f"numeric={numeric!r}{at} is not a known optimizer{hint}; "
                                     f"accepted: {_NUMERIC_HELP}")
    elif not (callable(numeric) or (hasattr(numeric, "step") and hasattr(numeric, "param_groups"))):
        raise InvalidOptionError(f"numeric{at} must be {_NUMERIC_HELP}; got "
                                 f"{type(numeric).__name__}")


def check_search(options: Mapping[str, Any], where: str = "") -> None:
    """`sampler` is a known sampler whose packages are installed (or an Optuna sampler);
    `trials_per_step` an int >= 1; `search_seed` an int or None."""
    at = f" {where}" if where else ""
    if "sampler" in options:
        from solvers.search import check_sampler

        try:
            check_sampler(options["sampler"])
        except (ValueError, TypeError, ImportError) as exc:
            raise InvalidOptionError(f"sampler{at}: {exc}") from exc
    steps = options.get("trials_per_step", 1)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidOptionError(f"trials_per_step{at} must be an int >= 1, got {steps!r}")
    seed = options.get("search_seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidOptionError(f"search_seed{at} must be an int or None, got {seed!r}")


def check_params(params: Any, where: str, seen: dict[int, str]) -> list[ParameterNode]:
    """The parameters of one group as a list: each a `tk.param`, none seen before.

    `where` names the group ("in param group 1"; "" for a plain list); `seen` maps the ids
    of parameters already taken to where they were given, and gets this group's added."""
    place = where or "in params"
    if isinstance(params, ParameterNode):
        params = [params]
    elif isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Iterable):
        raise InvalidOptionError(f"params {place} must be a list of tk.param(...) nodes (e.g. "
                                 f"model.parameters()), got {type(params).__name__}")
    params = list(params)
    if not params:
        raise InvalidOptionError(
            f"params {place}: an empty parameter list; each group needs at least one parameter: "
            f"pass model.parameters() or a list of tk.param(...) nodes (an exhausted generator "
            f"is empty too)")
    for p in params:
        if not isinstance(p, ParameterNode):
            raise TypeError(
                f"Optimizer parameters must be tk.param(...) nodes, got {type(p).__name__}; "
                f"wrap values with tk.param(value, name=...)")
    for p in params:
        if id(p) in seen:
            twice = (place if seen[id(p)] == place else
                     f"({seen[id(p)]} and again {place}): it is in more than one parameter group")
            raise InvalidOptionError(f"parameter {p.name!r} is given twice {twice}; pass each "
                                     f"parameter once: one solver updates it")
        seen[id(p)] = place
    return params
