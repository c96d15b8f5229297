"""pedagogym: simulated learners as fast JAX Gymnasium environments for content sequencing.

Importing the package registers every env id with Gymnasium (lazily: no JAX import, no
compilation), as ale_py and minigrid do::

    import gymnasium as gym
    import pedagogym

    gym.register_envs(pedagogym)
    env = gym.make("pedagogym/PrereqBKT-v0")
"""
from pedagogym._version import __version__


def _register_gym_ids() -> None:
    try:
        import gymnasium  # noqa: F401
    except ModuleNotFoundError:  # e.g. the bundle runtime (pedagogym.deploy) on a numpy-only host
        return
    from pedagogym.envs.registration import register_gym_ids

    register_gym_ids()


_register_gym_ids()
