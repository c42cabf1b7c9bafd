"""Walking the lineage graph upstream (where did this come from?) and downstream (what did
this feed?). Edges always point from upstream to downstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import Connection

from lockgate.clock import now_millis
from lockgate.entities import LineageEdge
from lockgate.store import Database, LineageRepository

__all__ = ["LineageGraph", "LineageService", "Node"]

Direction = Literal["upstream", "downstream", "both"]


@dataclass(frozen=True, slots=True, order=True)
class Node:
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(slots=True)
class LineageGraph:
    """The part of the graph reachable from ``root``."""

    root: Node
    nodes: set[Node] = field(default_factory=set)
    edges: list[LineageEdge] = field(default_factory=list)

    def upstream_of(self, node: Node) -> list[LineageEdge]:
        return [e for e in self.edges if (e.dst_kind, e.dst_id) == (node.kind, node.id)]

    def downstream_of(self, node: Node) -> list[LineageEdge]:
        return [e for e in self.edges if (e.src_kind, e.src_id) == (node.kind, node.id)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "nodes": [{"kind": n.kind, "id": n.id} for n in sorted(self.nodes)],
            "edges": [
                {"from": f"{e.src_kind}:{e.src_id}", "relation": e.relation, "to": f"{e.dst_kind}:{e.dst_id}"}
                for e in self.edges
            ],
        }


class LineageService:
    """Records edges and walks them."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._repo = LineageRepository()

    def record(self, conn: Connection, edges: list[LineageEdge]) -> None:
        """Add edges inside the caller's transaction; an edge recorded twice is kept once."""
        self._repo.add(conn, edges, now_millis())

    def walk(self, root: Node, *, direction: Direction = "both", depth: int = 25) -> LineageGraph:
        graph = LineageGraph(root=root, nodes={root})
        seen_edges: set[tuple[str, str, str, str, str]] = set()
        with self._db.read() as conn:
            for upstream in [True, False] if direction == "both" else [direction == "upstream"]:
                frontier = [root]
                visited = {root}
                for _ in range(depth):
                    edges = self._repo.neighbours(conn, [(n.kind, n.id) for n in frontier], upstream=upstream)
                    frontier = []
                    for e in edges:
                        key = (e.src_kind, e.src_id, e.relation, e.dst_kind, e.dst_id)
                        if key not in seen_edges:
                            seen_edges.add(key)
                            graph.edges.append(e)
                        nxt = Node(e.src_kind, e.src_id) if upstream else Node(e.dst_kind, e.dst_id)
                        if nxt not in visited:
                            visited.add(nxt)
                            frontier.append(nxt)
                    graph.nodes.update(visited)
                    if not frontier:
                        break
        return graph
