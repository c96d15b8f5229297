"""The agents' registration module: ``AGENTS`` maps each ``algo`` name of a training config to
its algorithm (JAX PPO and the SB3 baselines), as gymnax's and Jumanji's ``registration.py`` do."""
from __future__ import annotations

from pedagogym.agents.algos import Algorithm, JaxPPO
from pedagogym.agents.config import ALGOS
from pedagogym.agents.sb3_agents import ALGORITHMS as SB3_ALGORITHMS
from pedagogym.registry import Registry

AGENTS: Registry[Algorithm] = Registry("agent")
for _algo in (JaxPPO(), *SB3_ALGORITHMS):
    AGENTS.register(_algo.name, _algo)
assert tuple(AGENTS.names()) == ALGOS, "agents.config.ALGOS lists every registered algo, in order"
