"""Graph traversal: the subgraph linking parameters to outputs, and networkx export.

Extraction is one iterative pass over the ancestors of the outputs (linear in graph
size, no recursion limit), followed by one pass in topological order that marks the
nodes depending on the chosen parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any

from tracekit.nodes import MessageNode, Node, ParameterNode, short_repr


def topological_order(outputs: Sequence[Node]) -> list[Node]:
    """All ancestors of `outputs` (themselves included), parents before children.

    A node is always created after its parents, so creation order (`_uid`) is a
    topological order: collect the ancestors in one pass, then sort by uid (the
    collected list is nearly sorted already, which timsort handles in linear time).
    """
    return sorted(_ancestors(outputs).values(), key=_uid_of)


def _ancestors(outputs: Sequence[Node]) -> dict[int, Node]:
    seen: dict[int, Node] = {}
    stack: list[Node] = list(outputs)
    pop, extend = stack.pop, stack.extend
    while stack:
        n = pop()
        key = id(n)
        if key in seen:
            continue
        seen[key] = n
        extend(n.parents)
    return seen


_uid_of = attrgetter("_uid")


class Subgraph:
    """The part of a traced graph that links parameters to outputs.

    `nodes`: every ancestor of the outputs, in topological order.
    `on_path`: ids of nodes that depend on at least one of the parameters (parameters
    included) -- the calls whose inputs and outputs an optimizer should see.
    Both are computed when first read (a backward pass only needs `parameters`).
    """

    __slots__ = ("outputs", "parameters", "_nodes", "_on_path", "_seen", "_targets")

    def __init__(self, outputs: Sequence[Node], nodes: list[Node] | None, parameters: list[ParameterNode],
                 on_path: set[int] | None = None, *, seen: dict[int, Node] | None = None,
                 targets: set[int] | None = None) -> None:
        self.outputs = list(outputs)
        self.parameters = parameters
        self._nodes = nodes
        self._on_path = on_path
        self._seen = seen
        self._targets = targets

    @property
    def nodes(self) -> list[Node]:
        if self._nodes is None:
            self._nodes = sorted((self._seen or {}).values(), key=_uid_of)
        return self._nodes

    @property
    def on_path(self) -> set[int]:
        if self._on_path is None:
            targets = self._targets or set()
            on_path: set[int] = set()
            for n in self.nodes:
                if id(n) in targets:
                    on_path.add(id(n))
                    continue
                for p in n.parents:
                    if id(p) in on_path:
                        on_path.add(id(n))
                        break
            self._on_path = on_path
        return self._on_path

    def __len__(self) -> int:
        return len(self.nodes)

    def path_nodes(self) -> list[Node]:
        """Nodes on a path from a parameter to an output, in topological order."""
        on_path = self.on_path
        return [n for n in self.nodes if id(n) in on_path]

    def calls(self) -> list[MessageNode]:
        """Traced calls on the path, in execution order."""
        on_path = self.on_path
        return [n for n in self.nodes if isinstance(n, MessageNode) and id(n) in on_path]

    def depends_on(self, param: Node) -> bool:
        return id(param) in self.on_path

    def to_networkx(self) -> Any:
        return to_networkx(self)

    def __repr__(self) -> str:
        return (f"Subgraph({len(self.nodes)} nodes, {len(self.on_path)} on path, "
                f"{len(self.parameters)} parameters, {len(self.outputs)} outputs)")


def subgraph(outputs: Node | Sequence[Node], params: Iterable[ParameterNode] | None = None) -> Subgraph:
    """Extract the subgraph linking `params` (default: every trainable parameter found)
    to `outputs`, in time linear in the number of ancestors."""
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    seen = _ancestors(outs)
    if params is None:
        found = [n for n in seen.values() if n.is_parameter and n.trainable]
        targets = {id(n) for n in found}
    else:
        targets = {id(p) for p in params}
        found = [n for key, n in seen.items() if key in targets]
    if len(found) > 1:
        found.sort(key=_uid_of)  # topological order, as `nodes`
    return Subgraph(outs, None, found, seen=seen, targets=targets)  # type: ignore[arg-type]


def _node_kind(n: Node) -> str:
    if n.is_error:
        return "exception"
    if n.is_parameter:
        return "parameter"
    if isinstance(n, MessageNode):
        return "call"
    return "constant"


def to_networkx(graph: Node | Sequence[Node] | Subgraph) -> Any:
    """A `networkx.DiGraph` of a traced graph: one vertex per node (keyed by name),
    edges parent -> child with the argument names they feed."""
    import networkx as nx

    sub = graph if isinstance(graph, Subgraph) else subgraph(graph)
    g = nx.DiGraph()
    names: dict[int, str] = {}
    for n in sub.nodes:
        key = n.name
        if key in g:  # two nodes sharing a user-given name
            key = f"{key}#{n._uid}"
        names[id(n)] = key
        attrs: dict[str, Any] = {
            "type": _node_kind(n),
            "value": short_repr(n.raw, 60),
            "on_path": id(n) in sub.on_path,
            "is_output": any(n is o for o in sub.outputs),
        }
        if n.is_parameter:
            attrs["kind"] = n.kind
        if isinstance(n, MessageNode):
            attrs["op"] = n.op.name
            attrs["code"] = n.code_line()
        g.add_node(key, **attrs)
    for n in sub.nodes:
        if isinstance(n, MessageNode):
            for argname, p in zip(n.argnames, n.parents):
                u, v = names[id(p)], names[id(n)]
                if g.has_edge(u, v):
                    g.edges[u, v]["args"].append(argname)
                else:
                    g.add_edge(u, v, args=[argname])
    return g
