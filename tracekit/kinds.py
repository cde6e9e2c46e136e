"""What a valid value is, for each kind of parameter: the one definition of acceptance.

Every path that gives a parameter a value asks this module: assignment (`p.data = v`,
`p.set`, `p.trial`), loading (`Module.load_state_dict`), the text solver's replies (the
adapter in `tracekit/routes/text.py` hands the check to `solvers.text` as a callable), and
the step's apply (`Optimizer._apply`). `ParameterNode.validate` is `accept` followed by the
parameter's own validator (a trainable function's compiler, for example).

The rule: **a value is accepted as it is, or refused with the reason; acceptance never
turns it into a different value.** It may change the value's *form* — "0.5" becomes 0.5,
3.0 becomes 3 for an int parameter, a list becomes a tensor of the parameter's dtype,
" Dense " names the choice "dense" — but never its meaning. Hence:

- **Out-of-bounds numbers and tensors are refused, not clamped.** A value outside the
  bounds comes from a bug in the caller's code, units confused, or an LLM that misread the
  range; clamping would store a value nobody proposed and hide the mistake, while a
  refusal names it (to the user as `tk.InvalidValueError`, to the LLM as the reason in
  its re-ask). A proposed 3.5 for bounds (0, 2) and a user's `p.data = 3.5` both get the
  same answer. Solvers that move by an algorithm keep their own iterates inside the box
  (projected gradient steps clamp, SPSA clips); what they propose is then accepted here.
  Bounds are inclusive and compared on the value as it would be stored (in the tensor's
  dtype).
- A non-integral value for an integer parameter (a Python `int`, an integer tensor) is
  refused, not rounded (within 1e-9 of an integer counts as that integer).
- Numbers must be finite; `bool` is not a number.

A refused value raises `InvalidValueError`; the caller keeps the old value.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import sys
import textwrap
from typing import Any, NamedTuple

from tracekit.errors import InvalidValueError, message_of

INTEGER_TOLERANCE = 1e-9

# Names that proposed code may not introduce unless the code it replaces already uses them.
RISKY_NAMES = frozenset({
    "eval", "exec", "compile", "__import__", "open", "input", "breakpoint", "globals", "locals",
    "vars", "setattr", "delattr", "getattr", "os", "sys", "subprocess", "shutil", "socket",
    "importlib", "builtins", "ctypes", "pickle", "marshal", "signal", "threading", "multiprocessing",
    "exit", "quit",
})


def _torch() -> Any:
    return sys.modules.get("torch")


def _is_tensor(value: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


def accept(param: Any, value: Any) -> Any:
    """`value` in the form `param` stores, or InvalidValueError naming what is wrong.

    `param` is a `ParameterNode` (read: kind, name, bounds, choices, value_type and the
    current value, which gives a tensor's shape and dtype and the code a new source must
    match)."""
    kind = param.kind
    where = f"parameter {param.name!r} ({kind})"
    if kind == "categorical":
        return accept_choice(value, param.choices or [], where)
    if kind == "numeric":
        current = param.raw
        if _is_tensor(current):
            return accept_tensor(value, current, param.bounds, where)
        return accept_number(value, param.bounds, param.value_type is int, where)
    if kind == "code":
        return accept_code(value, param.raw, where)
    if kind == "text":
        return accept_text(value, param.value_type, where)
    if kind == "demos":
        return accept_demos(value, where)
    raise InvalidValueError(f"{where}: unknown kind")


# --- numbers -------------------------------------------------------------------------------------
def check_bounds(value: Any, bounds: tuple[float, float] | None, where: str) -> None:
    """Refuse a number or tensor with anything outside the inclusive `bounds` (see the
    module doc: refused, never clamped)."""
    if bounds is None:
        return
    lo, hi = bounds
    if _is_tensor(value):
        if value.numel() == 0:
            return
        low, high = _torch().aminmax(value)  # one pass; entries are counted only on refusal
        if low < lo or high > hi:
            outside = int(((value < lo) | (value > hi)).sum())
            raise InvalidValueError(
                f"{where}: {outside} of {value.numel()} entries are outside bounds ({lo:g}, {hi:g}); "
                f"out-of-bounds values are refused, not clamped: use values within the bounds or widen them"
            )
    elif not lo <= value <= hi:
        raise InvalidValueError(
            f"{where}: {value:g} is outside bounds ({lo:g}, {hi:g}); out-of-bounds values are "
            f"refused, not clamped: use a value within the bounds or widen them"
        )


def accept_number(value: Any, bounds: tuple[float, float] | None, integer: bool, where: str) -> int | float:
    """A finite Python number (from a number, a numeric string or anything with
    `__float__`), whole when `integer`, within `bounds`."""
    if isinstance(value, bool):
        raise InvalidValueError(f"{where}: expected a number, got a bool")
    if isinstance(value, int):
        number: int | float = value
    elif isinstance(value, (float, str)) or hasattr(value, "__float__"):
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidValueError(f"{where}: expected a number, got {_preview(value)}") from None
    else:
        raise InvalidValueError(f"{where}: expected a number, got {type(value).__name__}")
    if isinstance(number, float) and not math.isfinite(number):
        raise InvalidValueError(f"{where}: value must be finite, got {_preview(value)}")
    if integer and isinstance(number, float):
        if abs(number - round(number)) > INTEGER_TOLERANCE:
            raise InvalidValueError(f"{where}: expected an integer, got {number:g} (not rounded: give a whole number)")
        number = int(round(number))
    check_bounds(number, bounds, where)
    return int(number) if integer else float(number)


def accept_tensor(value: Any, current: Any, bounds: tuple[float, float] | None, where: str) -> Any:
    """A detached tensor with `current`'s shape, dtype and device: finite, whole numbers
    for an integer dtype, within `bounds` (compared in that dtype). Accepts tensors,
    numpy arrays, nested lists and their JSON text."""
    import torch

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidValueError(f"{where}: expected numbers (a tensor, array or nested list), "
                                    f"got text that is not a JSON list") from None
    if _is_tensor(value):
        source = value.detach()
    else:
        if _holds_bool(value):
            raise InvalidValueError(f"{where}: expected numbers, got a bool among them")
        try:
            source = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidValueError(f"{where}: cannot make a tensor from {_preview(value)}: {message_of(exc)}") from None
    if source.dtype == torch.bool and current.dtype != torch.bool:
        raise InvalidValueError(f"{where}: expected numbers, got a bool tensor")
    if source.shape != current.shape:
        raise InvalidValueError(f"{where}: expected shape {tuple(current.shape)}, got {tuple(source.shape)}")
    if (source.is_floating_point() or source.is_complex()) and not bool(torch.isfinite(source).all()):
        raise InvalidValueError(f"{where}: value contains NaN or inf")
    whole_target = not (current.dtype.is_floating_point or current.dtype.is_complex)
    if whole_target and source.is_floating_point() and bool(
            ((source - source.round()).abs() > INTEGER_TOLERANCE).any()):
        raise InvalidValueError(f"{where}: an integer tensor takes whole numbers (values are not rounded)")
    new = source.round() if whole_target and source.is_floating_point() else source
    new = new.to(device=current.device, dtype=current.dtype)
    check_bounds(new, bounds, where)
    return new


def _holds_bool(value: Any) -> bool:
    """True when a (nested) list or tuple holds a bool; bounded by the value's size."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


# --- categorical ---------------------------------------------------------------------------------
def accept_choice(value: Any, choices: list[Any], where: str) -> Any:
    """The choice `value` is, or names: equal to a choice (a bool only equals a bool), or
    text equal to a choice's `str` once surrounding whitespace is dropped, or equal to
    exactly one choice ignoring case."""
    for choice in choices:
        if _same_choice(choice, value):
            return choice
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        for choice in choices:
            if str(choice) == text:
                return choice
        folded = [c for c in choices if str(c).casefold() == text.casefold()]
        if len(folded) == 1:
            return folded[0]
    raise InvalidValueError(f"{where}: {_preview(value)} is not one of the choices {choices!r}")


def _same_choice(choice: Any, value: Any) -> bool:
    if isinstance(choice, bool) != isinstance(value, bool):
        return False
    try:
        return bool(choice == value)
    except Exception:  # values whose == is not a bool (arrays): not this choice
        return False


# --- text ----------------------------------------------------------------------------------------
def accept_text(value: Any, value_type: type, where: str) -> Any:
    """A non-blank string; for a list / tuple / dict parameter, a value of that shape (JSON
    text is read; empty is allowed: few-shot lists and option dicts often start empty)."""
    if value_type in (list, dict, tuple):
        name = value_type.__name__
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise InvalidValueError(f"{where}: expected JSON for a {name}: {message_of(exc)}") from None
        want = dict if value_type is dict else (list, tuple)
        if not isinstance(value, want):
            raise InvalidValueError(f"{where}: expected a {name}, got {type(value).__name__}")
        if type(value) is value_type:
            return value  # the user's own object, as given
        return dict(value) if value_type is dict else value_type(value)
    if not isinstance(value, str):
        raise InvalidValueError(f"{where}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidValueError(f"{where}: an empty value is not allowed")
    return value


# --- demos ---------------------------------------------------------------------------------------
def accept_demos(value: Any, where: str) -> list[dict[str, Any]]:
    """Few-shot demos: a list (or its JSON text) of dicts with text keys and JSON values (an
    example's input fields and its output), each copied so that the caller's list is not
    shared. How many and which fields an LLM call takes is its own validator's rule."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidValueError(f"{where}: expected a JSON list of demos: {message_of(exc)}") from None
    if not isinstance(value, (list, tuple)):
        raise InvalidValueError(f"{where}: expected a list of demos (dicts of fields), got {type(value).__name__}")
    demos = []
    for i, demo in enumerate(value):
        if not isinstance(demo, dict) or not all(isinstance(k, str) for k in demo):
            raise InvalidValueError(f"{where}: demo {i} must be a dict with text keys (field -> value), "
                                    f"got {_preview(demo)}")
        try:
            demos.append(json.loads(json.dumps(demo)))
        except (TypeError, ValueError):
            raise InvalidValueError(f"{where}: demo {i} holds a value that is not JSON data "
                                    f"(text, numbers, lists, dicts)") from None
    return demos


# --- code ----------------------------------------------------------------------------------------
class CodeFacts(NamedTuple):
    """What a new source must keep from the code it replaces."""

    name: str
    params: list[str]
    is_async: bool
    risky: frozenset[str]
    defaults: frozenset[str]


def accept_code(value: Any, reference: Any, where: str) -> str:
    """Source that parses, holds exactly one function definition and nothing else (so
    defining it runs no statement), has no decorators, keeps the name, parameters and
    async-ness of `reference` (the code it replaces), introduces no risky name
    (`RISKY_NAMES`, imports, dunder attributes, global/nonlocal) that `reference` does not
    use, and compiles. Nothing is run. Returned as given (checked dedented)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError(f"{where}: an empty value is not allowed: code must be a non-empty "
                                f"string with the whole function")
    try:
        tree = ast.parse(textwrap.dedent(value))
    except SyntaxError as exc:
        raise InvalidValueError(f"{where}: does not parse: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError, MemoryError):
        raise InvalidValueError(f"{where}: does not parse") from None
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    others = len(tree.body) - len(defs)
    if len(defs) != 1 or others:
        raise InvalidValueError(f"{where}: must hold exactly one function definition and nothing else "
                                f"(found {len(defs)} definitions and {others} other statements)")
    fdef = defs[0]
    ref = code_facts(reference) if isinstance(reference, str) else None
    if ref is not None:
        if fdef.name != ref.name:
            raise InvalidValueError(f"{where}: defines {fdef.name!r}; it must define {ref.name!r}")
        params = _param_names(fdef.args)
        if params != ref.params:
            raise InvalidValueError(f"{where}: changes the signature: parameters {params} "
                                    f"instead of {ref.params}")
        if isinstance(fdef, ast.AsyncFunctionDef) != ref.is_async:
            raise InvalidValueError(f"{where}: must {'' if ref.is_async else 'not '}be an async function")
    if fdef.decorator_list:
        raise InvalidValueError(f"{where}: must not have decorators")
    allowed = ref.defaults if ref is not None else frozenset()
    for default in _defaults(fdef.args):
        if not _is_literal(default) and ast.dump(default) not in allowed:
            raise InvalidValueError(
                f"{where}: the default value `{_unparse(default)}` is not a constant; defaults must "
                f"be literals (numbers, strings, None, tuples of them) or the ones the code it "
                f"replaces has, because they run when the function is defined")
    new = _risky(tree) - (ref.risky if ref is not None else frozenset())
    if new:
        raise InvalidValueError(f"{where}: uses {', '.join(sorted(new))}, which the code it replaces "
                                f"does not; that is not allowed")
    try:
        compile(tree, "<tracekit:check>", "exec")
    except (SyntaxError, ValueError) as exc:
        raise InvalidValueError(f"{where}: does not compile: {message_of(exc)}") from None
    return value


@functools.lru_cache(maxsize=256)
def code_facts(source: str) -> CodeFacts | None:
    """The facts of the one function in `source`, or None when it holds no parseable one."""
    try:
        tree = ast.parse(textwrap.dedent(source))
        fdef = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    except (SyntaxError, ValueError, RecursionError, MemoryError, StopIteration):
        return None
    return CodeFacts(fdef.name, _param_names(fdef.args), isinstance(fdef, ast.AsyncFunctionDef),
                     frozenset(_risky(tree)), frozenset(ast.dump(d) for d in _defaults(fdef.args)))


def _defaults(args: ast.arguments) -> list[ast.expr]:
    return [*args.defaults, *(d for d in args.kw_defaults if d is not None)]


def _is_literal(node: ast.expr) -> bool:
    """A literal default: a constant, a signed number, or a tuple/frozen mix of them."""
    if isinstance(node, ast.Constant):
        return not isinstance(node.value, (str, bytes)) or len(node.value) <= 10_000
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float, complex))
    if isinstance(node, ast.Tuple):
        return len(node.elts) <= 100 and all(_is_literal(e) for e in node.elts)
    return False


def _unparse(node: ast.AST, limit: int = 60) -> str:
    try:
        text = ast.unparse(node)
    except (ValueError, RecursionError):
        text = type(node).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _param_names(args: ast.arguments) -> list[str]:
    names = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


def _risky(tree: ast.AST) -> set[str]:
    """Risky names, imports, dunder attributes and global/nonlocal used in `tree`."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in RISKY_NAMES:
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith("__"):
            found.add("." + node.attr)
        elif isinstance(node, ast.Import):
            found.update("import " + a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(f"import {node.module}")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            found.add("global/nonlocal")
    return found


def _preview(value: Any, limit: int = 60) -> str:
    if _is_tensor(value):
        return f"tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 12] + f"...[+{len(text) - limit + 12} chars]"
