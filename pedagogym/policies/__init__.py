"""Hand-written sequencing policies, batched in JAX, in one registry.

    from pedagogym.policies import POLICIES
    policy = POLICIES.get("leitner")
    action, pstate = policy.act(key, pstate, view, params, env)

Every policy is a :class:`Policy` (see :mod:`pedagogym.policies.base`): pure, ``jit``/``vmap``-
able, per learner, with its memory in a pytree updated from the logged history at each
decision. :class:`pedagogym.policies.gym.GymPolicyRunner` runs them in the Gymnasium loop.
"""
from pedagogym.policies.base import DesignerOrder, Policy, PolicyView, RandomPolicy, RoundRobin, masked_argmax
from pedagogym.policies.cat import KLSelection, MaxInfo, Randomesque
from pedagogym.policies.greedy import GreedyGain, GreedyOracle, RecallThreshold, UpperBound, expected_belief_gain, projected_test_time
from pedagogym.policies.mastery import MasteryThreshold
from pedagogym.policies.planning import BeliefPlanner
from pedagogym.policies.memorize import MemorizePolicy
from pedagogym.policies.schedulers import SM2, FSRSScheduler, Leitner, sm2_easiness, sm2_review
from pedagogym.policies.zpdes import ZPDES
from pedagogym.registry import Registry

POLICIES: Registry[Policy] = Registry("policy")

for _policy in (RandomPolicy(), DesignerOrder(), RoundRobin(), MasteryThreshold(), Leitner(), SM2(),
                FSRSScheduler(), GreedyGain(), ZPDES(), GreedyOracle(), UpperBound(), RecallThreshold(), MaxInfo(), KLSelection(),
                Randomesque(), BeliefPlanner(), MemorizePolicy()):
    POLICIES.register(_policy.name, _policy)

PRIVILEGED_MARK = " (privileged)"  # how tables and plots mark a privileged policy


def is_privileged(name: str) -> bool:
    """The registered policy ``name`` reads the simulated learner's latent state (an upper
    bound or a privileged heuristic, never deployable); trained agents and unknown names: False."""
    return name in POLICIES and bool(POLICIES.get(name).privileged)


__all__ = ["POLICIES", "PRIVILEGED_MARK", "is_privileged", "Policy", "PolicyView", "masked_argmax", "RandomPolicy", "DesignerOrder", "RoundRobin",
           "MasteryThreshold", "Leitner", "SM2", "FSRSScheduler", "GreedyGain", "ZPDES", "GreedyOracle", "UpperBound", "RecallThreshold", "projected_test_time",
           "expected_belief_gain", "sm2_easiness", "sm2_review", "MaxInfo", "KLSelection", "Randomesque", "BeliefPlanner", "MemorizePolicy"]
