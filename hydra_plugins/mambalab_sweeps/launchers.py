"""Launchers Hydra discovers by scanning `hydra_plugins.*`; each is named by its `_target_` here."""
from mambalab.sweeps.ray_launcher import RayTaskLauncherImpl


class RayTaskLauncher(RayTaskLauncherImpl):
    """Each job one Ray task with `num_gpus` GPUs (`conf/hydra/launcher/ray.yaml`)."""
