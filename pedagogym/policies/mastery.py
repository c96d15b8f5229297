"""Mastery learning on a knowledge-tracer belief.

Corbett, A. T. & Anderson, J. R. (1995). Knowledge tracing: Modeling the acquisition of
procedural knowledge. User Modeling and User-Adapted Interaction 4, 253-278 (the Cognitive
Tutor's mastery criterion: practise a skill until P(known) >= 0.95); the same rule drives
Khan Academy-style mastery learning.
"""
from __future__ import annotations

import jax.numpy as jnp

from pedagogym.errors import PedagogymError
from pedagogym.policies.base import Policy
from pedagogym.policies.common import designer_rank, prerequisites_mastered, skill_rank


class MasteryThreshold(Policy):
    """Work on the first skill (topological / designer order) whose belief is below
    ``threshold`` and whose prerequisites all have belief >= ``threshold``, presenting its
    least-practised valid item (ties: designer order); advance once the belief reaches the
    threshold. When every skill is mastered, review the lowest-belief skill. Only skills
    with at least one valid (unlocked, available) item are targeted."""

    name = "mastery"
    description = "mastery threshold on the knowledge-tracer belief (Corbett & Anderson 1995)"

    def __init__(self, threshold: float = 0.95):
        if not 0.0 < threshold <= 1.0:
            raise PedagogymError(f"mastery: threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)

    def _static_key(self) -> tuple:
        return (self.threshold,)

    def target_skill(self, view, params):
        """int32[] the skill the policy works on now."""
        curr = params.curriculum
        belief = view.history.belief
        mastered = belief >= self.threshold
        prereq_ok = prerequisites_mastered(mastered, curr)
        has_valid = jnp.any((curr.q_matrix > 0) & view.action_mask[:, None], axis=0)
        candidate = ~mastered & prereq_ok & has_valid
        big = curr.n_skills + 1
        first = jnp.argmin(jnp.where(candidate, skill_rank(curr), big))
        weakest = jnp.argmin(jnp.where(has_valid, belief, 2.0))
        return jnp.where(jnp.any(candidate), first, weakest).astype(jnp.int32)

    def scores(self, key, pstate, view, params, env):
        curr = params.curriculum
        h = view.history
        target = self.target_skill(view, params)
        on_target = (curr.q_matrix[:, target] > 0).astype(jnp.float32)
        # items touching an unmastered skill come before review of mastered-only items
        unmastered = jnp.any((curr.q_matrix > 0) & (h.belief < self.threshold)[None, :], axis=1)
        least_practised = -h.item_attempts / (jnp.max(h.item_attempts) + 1.0)  # in (-1, 0]
        tie = -designer_rank(curr) / (curr.n_items + 1.0) / (jnp.max(h.item_attempts) + 2.0)
        return 100.0 * on_target + 10.0 * unmastered + least_practised + tie, pstate
