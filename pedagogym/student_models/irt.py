"""Item response theory (1PL / 2PL / 3PL) with an ability that grows with practice.

Response function (logistic IRT, Birnbaum 1968; Lord 1980), *without* the 1.702
normal-ogive scaling constant::

    P(correct | theta) = c + (1 - c) * sigmoid(a * (theta - b))

with discrimination ``a`` (1 in the 1PL/Rasch model), difficulty ``b`` and lower
asymptote (pseudo-guessing) ``c`` (0 in the 1PL and 2PL models).

The simulated learner is a *learning* IRT model in the additive-factors style
(Cen, Koedinger & Junker 2006, Learning Factors Analysis; the "explanatory IRT" view of
De Boeck & Wilson 2004): each practice opportunity on a skill adds to the ability on
that skill, a larger gain after a correct answer (``growth``) than after a failed
attempt (``fail_growth``). Multi-skill items are compensatory: the ability that enters
the response function is the mean ability over the item's skills.

:func:`prob_3pl` and :func:`fisher_information_3pl` are the plain item functions,
shared with adaptive-testing code (the latter is the standard 3PL item information,
e.g. catsim's ``irt.inf``, without the 1.702 constant).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.student_models.base import StudentModel, Traits, item_default, item_skills, skill_mean


class IRTParams(NamedTuple):
    """Per-skill learning-IRT parameters, each float32[S].

    theta0:      initial ability (logit scale, same scale as item difficulty ``b``).
    growth:      ability gained per practice opportunity answered correctly.
    fail_growth: ability gained per failed attempt (normally a fraction of ``growth``).
    guess:       3PL lower asymptote used for items that give no ``guess`` of their own
                 (ignored by the 1PL and 2PL models).
    """

    theta0: Array
    growth: Array
    fail_growth: Array
    guess: Array


class IRTState(NamedTuple):
    theta: Array  # float32[S] current ability per skill; hidden from the policy


# ---- item functions ---------------------------------------------------------------------
def prob_3pl(theta: Array, a: Array, b: Array, c: Array) -> Array:
    """3PL probability of a correct response, ``c + (1 - c) * sigmoid(a * (theta - b))``.

    Broadcasts over its arguments (float32[...]); the 2PL is ``c = 0``, the 1PL ``a = 1, c = 0``.
    """
    return c + (1.0 - c) * jax.nn.sigmoid(a * (theta - b))


def fisher_information_3pl(theta: Array, a: Array, b: Array, c: Array) -> Array:
    """3PL item information at ``theta``: ``a^2 (P - c)^2 (1 - P) / ((1 - c)^2 P)``.

    Written with ``s = sigmoid(a (theta - b))`` (so ``P - c = (1 - c) s`` and
    ``1 - P = (1 - c)(1 - s)``) as ``a^2 (1 - c) s^2 (1 - s) / P``, which is the same
    quantity without catastrophic cancellation; for ``c = 0`` it is ``a^2 s (1 - s)``.
    Far in the lower tail (``s`` and ``P`` underflow to 0 when ``c = 0``) it returns 0,
    the limit, rather than 0/0.
    """
    s = jax.nn.sigmoid(a * (theta - b))
    p = c + (1.0 - c) * s
    tiny = jnp.finfo(jnp.result_type(p)).tiny
    return a * a * (1.0 - c) * s * (1.0 - s) * (s / jnp.maximum(p, tiny))


# ---- the simulated learner ----------------------------------------------------------------
class IRT(StudentModel):
    """Learning IRT learner; ``n_pl`` picks the 1PL (Rasch), 2PL or 3PL response function.

    * 1PL: ``a = 1``, ``c = 0`` (item discrimination and guess are ignored);
    * 2PL: ``a = curr.discrimination[i]``, ``c = 0``;
    * 3PL: ``a = curr.discrimination[i]``, ``c = curr.guess[i]`` where given, else the
      mean of ``params.guess`` over the item's skills.
    """

    family = "skill"
    citation = ("Birnbaum (1968) logistic IRT; learning as additive factors, "
                "Cen, Koedinger & Junker (2006)")

    def __init__(self, n_pl: int = 2, theta0: float = -1.0, growth: float = 0.15,
                 fail_growth: float = 0.05, guess: float = 0.2, name: str | None = None):
        if n_pl not in (1, 2, 3):
            raise PedagogymError(f"IRT: n_pl must be 1, 2 or 3, got {n_pl!r}")
        self.n_pl = int(n_pl)
        self.name = name or f"irt{self.n_pl}pl"
        self.defaults = (float(theta0), float(growth), float(fail_growth), float(guess))

    def _static_key(self) -> tuple:
        return (self.n_pl, *self.defaults, self.name)

    def __repr__(self) -> str:
        return f"IRT(n_pl={self.n_pl}, name={self.name!r})"

    def ability(self, params: IRTParams, state: IRTState, curr: CurriculumArrays) -> Array:
        """float32[] the unidimensional ability an assessment estimates: the mean of
        ``theta`` over the skills (the ability itself for a one-skill item bank)."""
        return jnp.mean(state.theta)

    # -- item parameters as this model sees them
    def _item_abc(self, params: IRTParams, curr: CurriculumArrays, item: Array) -> tuple[Array, Array, Array]:
        b = curr.difficulty[item]
        if self.n_pl == 1:
            return jnp.float32(1.0), b, jnp.float32(0.0)
        a = curr.discrimination[item]
        if self.n_pl == 2:
            return a, b, jnp.float32(0.0)
        c = item_default(curr.guess[item], skill_mean(params.guess, item_skills(curr, item)))
        return a, b, c

    def default_params(self, curr: CurriculumArrays) -> IRTParams:
        ones = jnp.ones((curr.n_skills,), jnp.float32)
        return IRTParams(*(v * ones for v in self.defaults))

    def apply_traits(self, params: IRTParams, traits: Traits) -> IRTParams:
        rate = jnp.exp(traits.speed)
        return params._replace(
            theta0=params.theta0 + traits.prior,
            growth=params.growth * rate,
            fail_growth=params.fail_growth * rate,
        )

    def init(self, key: Array, params: IRTParams, curr: CurriculumArrays) -> IRTState:
        return IRTState(theta=jnp.asarray(params.theta0, jnp.float32))

    def p_correct(self, params: IRTParams, state: IRTState, curr: CurriculumArrays, item: Array, t: Array) -> Array:
        theta = skill_mean(state.theta, item_skills(curr, item))  # compensatory
        a, b, c = self._item_abc(params, curr, item)
        return prob_3pl(theta, a, b, c)

    def learn(self, key: Array, params: IRTParams, state: IRTState, curr: CurriculumArrays,
              item: Array, correct: Array, t: Array, gate: Array) -> IRTState:
        skills = item_skills(curr, item)
        gain = jnp.where(correct, params.growth, params.fail_growth)
        theta = state.theta + skills * gate * gain
        return IRTState(theta=theta.astype(state.theta.dtype))

    def mastery(self, params: IRTParams, state: IRTState, curr: CurriculumArrays, t: Array) -> Array:
        """float32[S]: mean over the items exercising each skill of ``sigmoid(a_i (theta_s - b_i))``
        (no guessing floor); a skill no item exercises uses ``a = 1, b = 0``."""
        a = jnp.ones_like(curr.discrimination) if self.n_pl == 1 else curr.discrimination
        p = jax.nn.sigmoid(a[:, None] * (state.theta[None, :] - curr.difficulty[:, None]))  # [I, S]
        q = curr.q_matrix
        n = jnp.sum(q, axis=0)
        mean = jnp.sum(p * q, axis=0) / jnp.maximum(n, 1.0)
        return jnp.where(n > 0, mean, jax.nn.sigmoid(state.theta))
