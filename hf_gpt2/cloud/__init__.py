"""Remote runs with SkyPilot: render a task from a recipe, launch it, watch it, pull its run folder, tear it down.

``task`` renders (plain YAML, no SkyPilot needed), ``orchestrator`` is the only module that calls SkyPilot (its `sky`
command), ``launcher`` puts them together for `hf-gpt2 cloud`, ``remote`` runs on the cluster.
"""

from hf_gpt2.cloud.errors import CloudError
from hf_gpt2.cloud.task import LaunchPlan, render_task, task_to_yaml

__all__ = ["CloudError", "LaunchPlan", "render_task", "task_to_yaml"]
