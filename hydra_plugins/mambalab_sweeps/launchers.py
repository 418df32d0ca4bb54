"""Launchers Hydra discovers by scanning `hydra_plugins.*`; each is named by its `_target_` here.

The implementation's module is imported, not its class: Hydra registers every Launcher class it
finds in this module's namespace, and only classes under `hydra_plugins` can be instantiated.
"""
from mambalab.sweeps import ray_launcher as _ray


class RayTaskLauncher(_ray.RayTaskLauncherImpl):
    """Each job one Ray task with `num_gpus` GPUs (`conf/hydra/launcher/ray.yaml`)."""
