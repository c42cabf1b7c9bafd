"""``lockgate lineage REF``: where something came from and what it fed."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.tree import Tree

from lockgate.cli._context import state
from lockgate.cli._output import short
from lockgate.entities import NodeKind
from lockgate.lineage import LineageGraph, Node
from lockgate.workspace import Workspace

__all__ = ["Format", "label", "lineage", "render"]


class Format(StrEnum):
    text = "text"
    json = "json"
    openlineage = "openlineage"


_STYLE: dict[str, tuple[str, str]] = {
    NodeKind.RUN: ("run", "cyan"),
    NodeKind.DATASET: ("dataset", "green"),
    NodeKind.MODEL_VERSION: ("model", "magenta"),
    NodeKind.CODE: ("code", "yellow"),
    NodeKind.ENVIRONMENT: ("environment", "blue"),
    NodeKind.ARTIFACT: ("artifact", "dim"),
}


def label(node: Node, runs: dict[str, str]) -> str:
    """A readable name for a lineage node, as rich markup with the user's text escaped."""
    match node.kind:
        case NodeKind.RUN:
            text = f"{short(node.id)} {runs.get(node.id, '')}"
        case NodeKind.DATASET:
            name, _, digest = node.id.rpartition("@")
            text = f"{name}@{digest[:12]}" if "/" in name else f"datasets:/{name}@{digest[:12]}"
        case NodeKind.MODEL_VERSION:
            text = f"models:/{node.id}"
        case NodeKind.ENVIRONMENT:
            text = short(node.id, 12)
        case NodeKind.ARTIFACT:
            text = f"sha256:{short(node.id, 12)}"
        case _:
            text = node.id
    kind, style = _STYLE.get(node.kind, (node.kind, "default"))
    return f"[{style}]{kind}[/] {escape(text)}"


def render(ws: Workspace, graph: LineageGraph, direction: Literal["upstream", "downstream", "both"]) -> list[Tree]:
    """Rich trees: one growing upstream from the root, one downstream."""
    run_ids = [n.id for n in graph.nodes if n.kind == NodeKind.RUN]
    records = ws.run_records(run_ids)
    runs = {i: f"{r.experiment}/{r.name} ({r.status})" for i, r in records.items()}
    trees = []
    for upstream in [True, False] if direction == "both" else [direction == "upstream"]:
        tree = Tree(f"{'upstream of' if upstream else 'downstream of'} {label(graph.root, runs)}")
        _grow(graph, graph.root, tree, runs, upstream, {graph.root})
        trees.append(tree)
    return trees


def _grow(graph: LineageGraph, node: Node, tree: Tree, runs: dict[str, str], upstream: bool, shown: set[Node]) -> None:
    """Each node is drawn once: later mentions of a run or artifact say so, and repeated
    leaves (the same environment under every step) are left out, so big graphs stay readable."""
    edges = graph.upstream_of(node) if upstream else graph.downstream_of(node)
    for e in sorted(edges, key=lambda e: (e.relation, e.src_id, e.dst_id)):
        nxt = Node(e.src_kind, e.src_id) if upstream else Node(e.dst_kind, e.dst_id)
        relation = "" if e.relation == nxt.kind else f"[dim]{escape(e.relation)}[/] "
        if nxt in shown:
            if nxt.kind in (NodeKind.RUN, NodeKind.ARTIFACT, NodeKind.MODEL_VERSION):
                tree.add(f"{relation}{label(nxt, runs)} [dim](above)[/]")
            continue
        shown.add(nxt)
        branch = tree.add(f"{relation}{label(nxt, runs)}")
        _grow(graph, nxt, branch, runs, upstream, shown)


def lineage(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID or datasets:/NAME@HASH.")
    ],
    upstream: Annotated[bool, typer.Option("--upstream", help="Only what REF came from.")] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="Only what REF fed.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text, json or openlineage (RunEvents).")] = Format.text,
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
) -> None:
    """Walk lineage from a model, run or dataset.

    Example: lockgate lineage models:/fraud@champion --upstream
    """
    st = state(ctx)
    if as_json and fmt is Format.text:
        fmt = Format.json
    ws = st.workspace()
    direction: Literal["upstream", "downstream", "both"] = (
        "upstream" if upstream and not downstream else "downstream" if downstream and not upstream else "both"
    )
    if fmt is Format.openlineage:
        st.output.json(ws.openlineage(ref, direction=direction))
        return
    graph = ws.lineage_of(ref, direction=direction)
    if fmt is Format.json:
        st.output.json(graph.to_dict())
        return
    for tree in render(ws, graph, direction):
        st.output.print(tree)
