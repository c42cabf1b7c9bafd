"""Persistence of metadata: the schema, transactions, migrations and per-domain SQL.

Domain services never write SQL; they call these repositories inside one transaction from
:class:`~lockgate.store.database.Database`, so a change that touches several tables
(a model version, its lineage edges and its audit event) commits together or not at all.
"""

from lockgate.store.audit import AuditRepository
from lockgate.store.contracts import ContractRepository
from lockgate.store.database import Database
from lockgate.store.datasets import DatasetRepository
from lockgate.store.deployments import DeploymentRepository
from lockgate.store.features import FeatureRepository
from lockgate.store.lineage import LineageRepository
from lockgate.store.pipelines import PipelineRepository
from lockgate.store.registry import ModelRepository
from lockgate.store.rollouts import RolloutStatsRepository
from lockgate.store.runs import RunRepository
from lockgate.store.triggers import LeaseRepository, TriggerRepository

__all__ = [
    "AuditRepository",
    "ContractRepository",
    "Database",
    "DatasetRepository",
    "DeploymentRepository",
    "FeatureRepository",
    "LeaseRepository",
    "LineageRepository",
    "ModelRepository",
    "PipelineRepository",
    "RolloutStatsRepository",
    "RunRepository",
    "TriggerRepository",
]
