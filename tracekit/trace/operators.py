"""Trace's `operators` module: each operator is a small Python function traced with
`bundle` (as in Trace), so `ops.add(x, y)` records one call with inputs `x` and `y`.

Names, argument names and results follow Trace's `opto.trace.operators`; `call_llm` asks
the default backend (`tk.llm.default()`).
"""

from __future__ import annotations

import builtins
import copy
import math
from typing import Any

from tracekit.trace.bundling import bundle

# ruff: noqa: A001  (the names shadow builtins on purpose: they are Trace's)


@bundle("[clone] A deep copy of x.")
def clone(x: Any) -> Any:
    return copy.deepcopy(x)


@bundle("[identity] A copy of x (a new node whose parent is x).")
def identity(x: Any) -> Any:
    return copy.deepcopy(x)


@bundle("[pos] +x")
def pos(x: Any) -> Any:
    return +x


@bundle("[neg] -x")
def neg(x: Any) -> Any:
    return -x


@bundle("[abs] abs(x)")
def abs(x: Any) -> Any:
    return builtins.abs(x)


@bundle("[invert] ~x")
def invert(x: Any) -> Any:
    return ~x


@bundle("[round] round(x, n)")
def round(x: Any, n: Any = None) -> Any:
    return builtins.round(x, n)


@bundle("[floor] math.floor(x)")
def floor(x: Any) -> Any:
    return math.floor(x)


@bundle("[ceil] math.ceil(x)")
def ceil(x: Any) -> Any:
    return math.ceil(x)


@bundle("[trunc] math.trunc(x)")
def trunc(x: Any) -> Any:
    return math.trunc(x)


@bundle("[add] x + y")
def add(x: Any, y: Any) -> Any:
    return x + y


@bundle("[subtract] x - y")
def subtract(x: Any, y: Any) -> Any:
    return x - y


@bundle("[multiply] x * y")
def multiply(x: Any, y: Any) -> Any:
    return x * y


@bundle("[floor_divide] x // y")
def floor_divide(x: Any, y: Any) -> Any:
    return x // y


@bundle("[divide] x / y")
def divide(x: Any, y: Any) -> Any:
    return x / y


@bundle("[mod] x % y")
def mod(x: Any, y: Any) -> Any:
    return x % y


@bundle("[divmod] divmod(x, y)")
def node_divmod(x: Any, y: Any) -> Any:
    return divmod(x, y)


@bundle("[power] x ** y")
def power(x: Any, y: Any) -> Any:
    return x**y


@bundle("[lshift] x << y")
def lshift(x: Any, y: Any) -> Any:
    return x << y


@bundle("[rshift] x >> y")
def rshift(x: Any, y: Any) -> Any:
    return x >> y


@bundle("[and] x & y")
def and_(x: Any, y: Any) -> Any:
    return x & y


@bundle("[or] x | y")
def or_(x: Any, y: Any) -> Any:
    return x | y


@bundle("[xor] x ^ y")
def xor(x: Any, y: Any) -> Any:
    return x ^ y


@bundle("[lt] x < y")
def lt(x: Any, y: Any) -> Any:
    return x < y


@bundle("[le] x <= y")
def le(x: Any, y: Any) -> Any:
    return x <= y


@bundle("[eq] x == y")
def eq(x: Any, y: Any) -> Any:
    return x == y


@bundle("[neq] x != y")
def neq(x: Any, y: Any) -> Any:
    return x != y


ne = neq


@bundle("[ge] x >= y")
def ge(x: Any, y: Any) -> Any:
    return x >= y


@bundle("[gt] x > y")
def gt(x: Any, y: Any) -> Any:
    return x > y


@bundle("[cond] x if condition else y")
def cond(condition: Any, x: Any, y: Any) -> Any:
    return x if condition else y


@bundle("[not] not x")
def not_(x: Any) -> Any:
    return not x


@bundle("[is] x is y")
def is_(x: Any, y: Any) -> Any:
    return x is y


@bundle("[is_not] x is not y")
def is_not(x: Any, y: Any) -> Any:
    return x is not y


@bundle("[in] x in y")
def in_(x: Any, y: Any) -> Any:
    return x in y


@bundle("[not_in] x not in y")
def not_in(x: Any, y: Any) -> Any:
    return x not in y


@bundle("[getitem] x[index]")
def getitem(x: Any, index: Any) -> Any:
    return x[index]


@bundle("[pop] x.pop(index)")
def pop(x: Any, index: Any) -> Any:
    return x.pop(index)


@bundle("[len] len(x)")
def len_(x: Any) -> Any:
    return len(x)


@bundle("[ord] ord(x)")
def ord_(x: Any) -> Any:
    return ord(x)


@bundle("[chr] chr(x)")
def chr_(x: Any) -> Any:
    return chr(x)


@bundle("[concat] x + y")
def concat(x: Any, y: Any) -> Any:
    return x + y


@bundle("[lower] x.lower()")
def lower(x: Any) -> Any:
    return x.lower()


@bundle("[upper] x.upper()")
def upper(x: Any) -> Any:
    return x.upper()


@bundle("[title] x.title()")
def title(x: Any) -> Any:
    return x.title()


@bundle("[swapcase] x.swapcase()")
def swapcase(x: Any) -> Any:
    return x.swapcase()


@bundle("[capitalize] x.capitalize()")
def capitalize(x: Any) -> Any:
    return x.capitalize()


@bundle("[split] x.split(y, maxsplit)")
def split(x: Any, y: Any, maxsplit: Any = -1) -> Any:
    return x.split(y, maxsplit)


@bundle("[strip] x.strip(chars)")
def strip(x: Any, chars: Any = None) -> Any:
    return x.strip(chars)


@bundle("[replace] x.replace(old, new, count)")
def replace(x: Any, old: Any, new: Any, count: Any = -1) -> Any:
    return x.replace(old, new, count)


@bundle("[format] x.format(*args, **kwargs)")
def format(x: Any, *args: Any, **kwargs: Any) -> Any:
    return x.format(*args, **kwargs)


@bundle("[join] x.join(y)")
def join(x: Any, *y: Any) -> Any:
    return x.join(y)


@bundle("[getattr] getattr(obj, attr)")
def node_getattr(obj: Any, attr: Any) -> Any:
    return getattr(obj, attr)


@bundle("[call] fun(*args, **kwargs)")
def call(fun: Any, *args: Any, **kwargs: Any) -> Any:
    return fun(*args, **kwargs)


@bundle("[to_list] list(x)")
def to_list(x: Any) -> Any:
    return list(x)


@bundle("[make_list] list(args)")
def make_list(*args: Any) -> Any:
    return list(args)


@bundle("[to_dict] dict(x)")
def to_dict(x: Any) -> Any:
    return dict(x)


@bundle("[make_dict] dict(**kwargs)")
def make_dict(**kwargs: Any) -> Any:
    return kwargs


@bundle("[to_set] set(x)")
def to_set(x: Any) -> Any:
    return set(x)


@bundle("[make_set] set(args)")
def make_set(*args: Any) -> Any:
    return set(args)


@bundle("[to_tuple] tuple(x)")
def to_tuple(x: Any) -> Any:
    return tuple(x)


@bundle("[make_tuple] tuple(args)")
def make_tuple(*args: Any) -> Any:
    return tuple(args)


@bundle("[keys] list(x.keys())")
def keys(x: Any) -> Any:
    return list(x.keys())


@bundle("[values] list(x.values())")
def values(x: Any) -> Any:
    return list(x.values())


@bundle("[dict_update] x.update(y); x")
def dict_update(x: Any, y: Any) -> Any:
    x.update(y)
    return x


@bundle("[dict_pop] x.pop(key); x")
def dict_pop(x: Any, key: Any) -> Any:
    x.pop(key)
    return x


@bundle("[dict_popitem] x.popitem(); x")
def dict_popitem(x: Any) -> Any:
    x.popitem()
    return x


@bundle("[list_append] x.append(y); x")
def list_append(x: Any, y: Any) -> Any:
    x.append(y)
    return x


@bundle("[list_clear] x.clear(); x")
def list_clear(x: Any) -> Any:
    x.clear()
    return x


@bundle("[list_extend] x.extend(y); x")
def list_extend(x: Any, y: Any) -> Any:
    x.extend(y)
    return x


@bundle("[list_insert] x.insert(index, y); x")
def list_insert(x: Any, index: Any, y: Any) -> Any:
    x.insert(index, y)
    return x


@bundle("[list_pop] x.pop(index); x")
def list_pop(x: Any, index: Any) -> Any:
    x.pop(index)
    return x


@bundle("[list_remove] x.remove(y); x")
def list_remove(x: Any, y: Any) -> Any:
    x.remove(y)
    return x


@bundle("[list_reverse] x.reverse(); x")
def list_reverse(x: Any) -> Any:
    x.reverse()
    return x


@bundle("[list_sort] x.sort(key=key, reverse=reverse); x")
def list_sort(x: Any, key: Any = None, reverse: Any = False) -> Any:
    x.sort(key=key, reverse=reverse)
    return x


@bundle("[set_add] x.add(y); x")
def set_add(x: Any, y: Any) -> Any:
    x.add(y)
    return x


@bundle("[set_clear] x.clear(); x")
def set_clear(x: Any) -> Any:
    x.clear()
    return x


@bundle("[set_discard] x.discard(y); x")
def set_discard(x: Any, y: Any) -> Any:
    x.discard(y)
    return x


@bundle("[set_intersection_update] x.intersection_update(y); x")
def set_intersection_update(x: Any, y: Any) -> Any:
    x.intersection_update(y)
    return x


@bundle("[set_pop] x.pop(); x")
def set_pop(x: Any) -> Any:
    x.pop()
    return x


@bundle("[set_remove] x.remove(y); x")
def set_remove(x: Any, y: Any) -> Any:
    x.remove(y)
    return x


@bundle("[set_symmetric_difference_update] x.symmetric_difference_update(y); x")
def set_symmetric_difference_update(x: Any, y: Any) -> Any:
    x.symmetric_difference_update(y)
    return x


@bundle("[set_update] x.update(y); x")
def set_update(x: Any, y: Any) -> Any:
    x.update(y)
    return x


@bundle("[call_llm] Query the language model of system_prompt with user_prompts.")
def call_llm(system_prompt: Any, *user_prompts: Any, **kwargs: Any) -> Any:
    from tracekit.trace.language_model import LLM

    messages = [{"role": "system", "content": system_prompt}]
    messages += [{"role": "user", "content": prompt} for prompt in user_prompts]
    return LLM()(messages=messages, **kwargs).choices[0].message.content
