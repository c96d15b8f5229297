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
from pedagogym.policies.greedy import GreedyGain, Oracle, RecallThreshold, expected_belief_gain
from pedagogym.policies.mastery import MasteryThreshold
from pedagogym.policies.memorize import MemorizePolicy
from pedagogym.policies.schedulers import SM2, FSRSScheduler, Leitner, sm2_easiness, sm2_review
from pedagogym.policies.zpdes import ZPDES
from pedagogym.registry import Registry

POLICIES: Registry[Policy] = Registry("policy")

for _policy in (RandomPolicy(), DesignerOrder(), RoundRobin(), MasteryThreshold(), Leitner(), SM2(),
                FSRSScheduler(), GreedyGain(), ZPDES(), Oracle(), RecallThreshold(), MaxInfo(), KLSelection(),
                Randomesque(), MemorizePolicy()):
    POLICIES.register(_policy.name, _policy)

__all__ = ["POLICIES", "Policy", "PolicyView", "masked_argmax", "RandomPolicy", "DesignerOrder", "RoundRobin",
           "MasteryThreshold", "Leitner", "SM2", "FSRSScheduler", "GreedyGain", "ZPDES", "Oracle", "RecallThreshold",
           "expected_belief_gain", "sm2_easiness", "sm2_review", "MaxInfo", "KLSelection", "Randomesque", "MemorizePolicy"]
