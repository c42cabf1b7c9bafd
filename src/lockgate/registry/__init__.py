"""The model registry: versions, aliases, signatures and verified loading."""

from lockgate.registry._models import ModelRegistry
from lockgate.registry._signature import infer_signature
from lockgate.registry.hooks import AliasHook, AliasMove

__all__ = ["AliasHook", "AliasMove", "ModelRegistry", "infer_signature"]
