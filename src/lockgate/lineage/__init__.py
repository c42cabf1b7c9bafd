"""Typed lineage edges, walks over them, and export as OpenLineage events."""

from lockgate.lineage._graph import LineageGraph, LineageService, Node
from lockgate.lineage._openlineage import openlineage_events

__all__ = ["LineageGraph", "LineageService", "Node", "openlineage_events"]
