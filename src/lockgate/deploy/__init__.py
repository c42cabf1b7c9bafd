"""Deployments: named, audited records of which model versions serve online, and how.

A deployment has routes (a model reference with a role and a weight: a primary route, and a
canary, shadow or challenger route while a rollout runs) and serving settings. A route to
``models:/fraud@champion`` follows the alias; ``models:/fraud/3`` is pinned. Servers poll
:meth:`DeploymentService.poll` to pick up new, changed and deleted deployments and alias
moves without a restart. :class:`RolloutService` (``ws.rollouts``) runs shadow, canary and
champion-challenger rollouts; a canary is analysed every interval and promoted or rolled back.
"""

from lockgate.deploy._analysis import AnalysisPolicy, Check, Verdict
from lockgate.deploy._rollout import Rollout, Strategy
from lockgate.deploy._rollouts import Decision, RolloutService, RolloutStatus
from lockgate.deploy._service import DeploymentPoll, DeploymentService
from lockgate.deploy._spec import Deployment, ResolvedDeployment, ResolvedRoute, Role, Route, ServingSettings

__all__ = [
    "AnalysisPolicy",
    "Check",
    "Decision",
    "Deployment",
    "DeploymentPoll",
    "DeploymentService",
    "ResolvedDeployment",
    "ResolvedRoute",
    "Role",
    "Rollout",
    "RolloutService",
    "RolloutStatus",
    "Route",
    "ServingSettings",
    "Strategy",
    "Verdict",
]
