"""Deployments: named, audited records of which model versions serve online, and how.

A deployment has routes (a model reference with a role and a weight; one primary route for
now, canary and shadow routes when rollouts arrive) and serving settings. A route to
``models:/fraud@champion`` follows the alias; ``models:/fraud/3`` is pinned. Servers poll
:meth:`DeploymentService.poll` to pick up new, changed and deleted deployments and alias
moves without a restart.
"""

from lockgate.deploy._service import DeploymentPoll, DeploymentService
from lockgate.deploy._spec import Deployment, ResolvedDeployment, ResolvedRoute, Role, Route, ServingSettings

__all__ = [
    "Deployment",
    "DeploymentPoll",
    "DeploymentService",
    "ResolvedDeployment",
    "ResolvedRoute",
    "Role",
    "Route",
    "ServingSettings",
]
