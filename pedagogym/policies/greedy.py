"""One-step greedy policies: on the observable belief (``greedy_gain``) and on the true
latent state (privileged, never deployable): ``greedy_oracle`` (greedy on the true mastery
now, a privileged heuristic) and ``upper_bound`` (greedy on the true post-test at the
projected test time, after a final review sweep on EFC flashcards: the bound the report
compares deployable policies with, refused on the memory models where it is not one)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import CurriculumArrays, ItemKind
from pedagogym.envs.observations import ObserverParams
from pedagogym.policies.base import Policy
from pedagogym.policies.common import designer_rank, lexicographic, observed_kind
from pedagogym.student_models import bkt

SECONDS_PER_DAY = 86400.0


def expected_belief_gain(belief: Array, observer: ObserverParams, curr: CurriculumArrays,
                         skill_weight: Array | None = None) -> Array:
    """float32[I] expected increase of the summed belief (float32[S]) if each item were
    presented now, under the platform's knowledge tracer (per-skill BKT, ``observer``).

    For each skill of the item, as the observer updates it
    (:func:`pedagogym.student_models.bkt.observe`): the predicted P(correct)
    ``b (1 - slip) + (1 - b) guess``, the posteriors after a correct / wrong response (no
    conditioning for study-only kinds), their expectation, then the transition; the gain
    is the expected belief after minus before, summed over the item's skills. (Under the
    observer's own prediction the expected posterior equals the prior, so the gain is the
    transition's ``(1 - b) learn - b forget`` per skill: the policy favours items whose
    skills have low belief and high learn rates, and items that exercise several skills.)
    ``skill_weight`` (float32[S], default 1) weights each skill's gain in the sum.
    """
    p_c = bkt.predict(belief, observer.p_guess, observer.p_slip)
    post_c = bkt.posterior(belief, True, observer.p_guess, observer.p_slip)
    post_w = bkt.posterior(belief, False, observer.p_guess, observer.p_slip)
    observed = jax.vmap(lambda i: observed_kind(curr, i))(jnp.arange(curr.n_items, dtype=jnp.int32))
    cond = jnp.where(observed[:, None], (p_c * post_c + (1.0 - p_c) * post_w)[None, :], belief[None, :])  # [I, S]
    after = bkt.transition(cond, observer.p_learn, observer.p_forget)  # linear: E[T(b)] = T(E[b])
    gain = jnp.where(curr.q_matrix > 0, after - belief[None, :], 0.0)
    return gain @ (jnp.ones_like(belief) if skill_weight is None else skill_weight)


class GreedyGain(Policy):
    """The valid item with the largest expected one-step gain in summed knowledge-tracer
    belief (:func:`expected_belief_gain`, observer params ``params.observer``); ties
    (within 1e-6): designer order."""

    name = "greedy_gain"
    description = "greedy on the expected gain in summed knowledge-tracer belief"

    def scores(self, key, pstate, view, params, env):
        curr = params.curriculum
        gain = expected_belief_gain(view.history.belief, params.observer, curr)
        return lexicographic(view.action_mask, (gain, -designer_rank(curr))), pstate


class GreedyOracle(Policy):
    """Privileged heuristic (formerly ``oracle``; not an upper bound: on memory models it
    optimises recall *now*, not at the test, and scores below random on vocab/HLR): for each valid item, the expected one-step increase of the
    learner's TRUE mean mastery (at the current time) from presenting it, estimated with
    ``n_samples`` draws of ``env.learner.attempt`` (the same draws for every item: common
    random numbers); pick the max.

    Ties (within 1e-6; e.g. every sampled gain 0) are broken by, in order: the privileged learnable
    mass of the item's skills, mean of (1 - true mastery) x learning gate; then, when items
    are locked (``unlock_threshold`` > 0), the observer's expected belief gain on the
    prerequisites that keep locked, not yet mastered skills locked (a one-step greedy would
    otherwise never practise a prerequisite the learner already knows, and the skills
    behind it would stay locked); then designer order."""

    name = "greedy_oracle"
    description = "privileged heuristic: greedy on the true latent mastery gain now (not an upper bound)"
    privileged = True

    def __init__(self, n_samples: int = 8):
        if n_samples < 1:
            raise PedagogymError(f"{self.name}: n_samples must be >= 1, got {n_samples}")
        self.n_samples = int(n_samples)

    def _static_key(self) -> tuple:
        return (self.n_samples,)

    def expected_gain(self, key: Array, view, params, env) -> Array:
        """float32[I] sample mean of the one-step gain in true mean mastery per item."""
        st = view.latent
        if st is None:
            raise PedagogymError(f"{self.name} is privileged: its view needs the latent EnvState (PolicyView.latent)")
        curr, lp, ls, t = params.curriculum, st.learner, st.student, st.history.t
        before = jnp.mean(env.learner.mastery(lp, ls, curr, t))
        keys = jax.random.split(key, self.n_samples)

        def after(item, k):
            att = env.learner.attempt(k, lp, ls, curr, item, t)
            return jnp.mean(env.learner.mastery(lp, att.state, curr, t))

        items = jnp.arange(curr.n_items, dtype=jnp.int32)
        return jax.vmap(lambda i: jnp.mean(jax.vmap(lambda k: after(i, k))(keys)))(items) - before

    def scores(self, key, pstate, view, params, env):
        st = view.latent
        curr = params.curriculum
        gain = self.expected_gain(key, view, params, env)
        m = env.learner.mastery(st.learner, st.student, curr, st.history.t)

        def learnable(item):
            g = env.learner.gate(st.learner, st.student, curr, item, st.history.t)
            w = curr.q_matrix[item]
            return jnp.sum(w * (1.0 - m) * g) / jnp.maximum(jnp.sum(w), 1.0)

        tie = jax.vmap(learnable)(jnp.arange(curr.n_items, dtype=jnp.int32))
        keys = (gain, tie, self.unlock_value(view, params, m), -designer_rank(curr))
        return lexicographic(view.action_mask, keys), pstate

    @staticmethod
    def unlock_value(view, params, mastery: Array) -> Array:
        """float32[I] observer belief gain on skills whose low belief keeps items of
        unmastered skills locked."""
        curr, h = params.curriculum, view.history
        locked = params.item_available & ~view.action_mask
        wanted = jnp.any((curr.q_matrix > 0) & locked[:, None] & (mastery < params.mastery_threshold)[None, :], axis=0)
        blocking = jnp.any(wanted[:, None] & (curr.prereq > 0), axis=0) & (h.belief < params.unlock_threshold)
        return expected_belief_gain(h.belief, params.observer, curr, blocking.astype(jnp.float32))


def projected_test_time(view, params, env) -> Array:
    """float32[] the day the post-test will happen, projected from the true state: the
    remaining items (``horizon - step``) at the learner's expected seconds per item
    (log-normal response times: mean duration x exp(-speed + sigma^2 / 2)) fill what is left
    of this session, then whole sessions ``7 / sessions_per_week`` days apart; plus
    ``test_delay_days``."""
    st = view.latent
    h, curr, lp = st.history, params.curriculum, st.learner
    sec_per_item = jnp.mean(curr.duration) * jnp.exp(-lp.rt.speed + 0.5 * lp.rt.sigma ** 2)
    sec_left = jnp.maximum(params.horizon - h.step, 0).astype(jnp.float32) * sec_per_item
    in_session = jnp.maximum(params.session_s - (h.t - h.session_start) * SECONDS_PER_DAY, 0.0)
    extra = jnp.maximum(sec_left - in_session, 0.0)
    n_more = jnp.ceil(extra / params.session_s)
    gap = 7.0 / lp.traits.sessions_per_week
    last_part = (extra - jnp.maximum(n_more - 1.0, 0.0) * params.session_s) / SECONDS_PER_DAY
    t_end = jnp.where(extra > 0, h.session_start + n_more * gap + last_part, h.t + sec_left / SECONDS_PER_DAY)
    return t_end + params.test_delay_days


class UpperBound(GreedyOracle):
    """Privileged upper bound: plans on the TRUE latent state with the simulator's own
    functions, by the student model's family (:attr:`ROUTES`) and, for memory models, by
    model (:attr:`MEMORY_ROUTES`):

    * ``skill`` models (BKT, PFA, IRT): a one-step greedy. For each valid item, the expected
      one-step gain (``n_samples`` draws of ``env.learner.attempt``, the same draws for every
      item: common random numbers) in

          value(state) = post-test score + mean true mastery, both at the projected test time

      (:func:`projected_test_time`; the post-test is the evaluation's own
      ``env.learner.post_test``, the mastery mean a dense companion for conjunctive test
      items). Ties as in :class:`GreedyOracle` (learnable mass, prerequisites that unlock
      unmastered skills, designer order).
    * ``hlr``: the same greedy (measured above every non-privileged policy there).
    * ``efc``: the greedy on the post-test alone assumes no later review and drills items
      that are already strong (it ties ``random`` on the quickstart's deck), so the value
      looks one sweep further (:meth:`sweep_gain`): after the candidate review,
      the reviews still left (``horizon - step - 1``, at most one per item) go to the items
      that gain most from a last review at the projected end of the episode, and the value
      is the expected post-test at the projected test time after that sweep (responses
      branched exactly: correct with the true P(correct), else wrong). Near the end of the
      episode (fewer reviews left than items) it is the final sweep itself; earlier, it
      spreads the reviews where they still count at the test.

    Measured above every non-privileged policy on the quickstart's maths/BKT, maths/PFA,
    vocab/EFC and vocab/HLR (README "Policies"), and by the tests on a small case of each
    supported memory model. The other memory models are refused (:meth:`route`): on the
    quickstart's deck neither route beats ``fsrs_scheduler`` on ``fsrs`` (greedy 0.917, sweep
    0.912 vs 0.918) nor on ``actr`` (greedy 0.420 vs 0.529; the sweep takes > 9 min per 300
    learners there); ``dash`` was not measured. An upper bound only where that was measured."""

    name = "upper_bound"
    description = ("privileged: greedy on the true post-test at the projected test time "
                   "(efc: after a final review sweep); the upper bound (maths, efc, hlr)")
    privileged = True
    #: how the bound plans, per student-model family; memory models only where a route was
    #: measured above every non-privileged policy (README "Policies"), by model name
    ROUTES = {"skill": "greedy"}
    MEMORY_ROUTES = {"efc": "sweep", "hlr": "greedy"}

    def route(self, env) -> str:
        """``"greedy"`` or ``"sweep"`` for ``env``'s student model; any other model (a memory
        model not in :attr:`MEMORY_ROUTES`, e.g. ``actr``, ``fsrs``, ``dash``) is refused with a
        PedagogymError naming it."""
        model = env.learner.model
        family = getattr(model, "family", None)
        route = self.MEMORY_ROUTES.get(model.name) if family == "memory" else self.ROUTES.get(family)
        if route is None:
            known = sorted([*self.MEMORY_ROUTES, *(f"{f} models" for f in self.ROUTES)])
            raise PedagogymError(
                f"{self.name} is not an upper bound on student model {model.name!r} (family {family!r}): it was measured "
                f"above every non-privileged policy only on {', '.join(known)}; use the privileged heuristics "
                f"`threshold` or `greedy_oracle` there instead, and do not report them as an upper bound")
        return route

    def scores(self, key, pstate, view, params, env):
        if self.route(env) == "sweep":
            if view.latent is None:
                raise PedagogymError(f"{self.name} is privileged: its view needs the latent EnvState (PolicyView.latent)")
            curr = params.curriculum
            return lexicographic(view.action_mask, (self.sweep_gain(key, view, params, env), -designer_rank(curr))), pstate
        return super().scores(key, pstate, view, params, env)

    def sweep_gain(self, key: Array, view, params, env) -> Array:
        """float32[I] (the ``efc`` route) the expected increase, from reviewing each item now, of

            sweep value(state) = post-test at T after one last review, at the projected end of
            the episode (T - test_delay_days), of each of the ``horizon - step - 1`` items that
            gain most from it (all of them when that many reviews are left)

        with T the projected test time (:func:`projected_test_time`). A review's response is
        branched exactly (correct with the learner's true P(correct), else wrong; study-only
        kinds count as correct), with the model's own ``learn`` and the learner's gate; the
        post-test is ``env.learner.post_test`` and an item's gain is its weight in it times the
        change of its P(correct) at T."""
        st = view.latent
        curr, lp, ls, t = params.curriculum, st.learner, st.student, st.history.t
        model = env.learner.model
        t_test = projected_test_time(view, params, env)
        t_end = t_test - params.test_delay_days
        left = jnp.maximum(params.horizon - st.history.step - 1, 0)
        is_test = curr.kind == int(ItemKind.ASSESSMENT)
        w = jnp.where(jnp.any(is_test), is_test, True).astype(jnp.float32)
        w = w / jnp.sum(w)
        items = jnp.arange(curr.n_items, dtype=jnp.int32)

        def review(ms, item, when):
            """P(correct) and the model states after a correct / a wrong response."""
            ls_ = ls._replace(model=ms)
            p = jnp.where(observed_kind(curr, item), env.learner.p_correct(lp, ls_, curr, item, when), 1.0)
            g = env.learner.gate(lp, ls_, curr, item, when)
            ok = model.learn(key, lp.model, ms, curr, item, jnp.asarray(True), when, g)
            wrong = model.learn(key, lp.model, ms, curr, item, jnp.asarray(False), when, g)
            return p, ok, wrong

        def value(ms):
            def gain(j):
                p, ok, wrong = review(ms, j, t_end)
                at_test = lambda m: model.p_correct(lp.model, m, curr, j, t_test)  # noqa: E731
                return w[j] * (p * at_test(ok) + (1.0 - p) * at_test(wrong) - at_test(ms))
            ranked = -jnp.sort(-jax.vmap(gain)(items))
            sweep = jnp.sum(jnp.where(items < left, jnp.maximum(ranked, 0.0), 0.0))
            return env.learner.post_test(lp, ls._replace(model=ms), curr, t_test) + sweep

        def after(item):
            p, ok, wrong = review(ls.model, item, t)
            return p * value(ok) + (1.0 - p) * value(wrong)

        return jax.vmap(after)(items) - value(ls.model)

    def expected_gain(self, key: Array, view, params, env) -> Array:
        st = view.latent
        if st is None:
            raise PedagogymError(f"{self.name} is privileged: its view needs the latent EnvState (PolicyView.latent)")
        curr, lp, ls, t = params.curriculum, st.learner, st.student, st.history.t
        t_eval = projected_test_time(view, params, env)

        def value(state):
            return env.learner.post_test(lp, state, curr, t_eval) + jnp.mean(env.learner.mastery(lp, state, curr, t_eval))

        before = value(ls)
        keys = jax.random.split(key, self.n_samples)
        items = jnp.arange(curr.n_items, dtype=jnp.int32)
        after = jax.vmap(lambda i: jnp.mean(jax.vmap(lambda k: value(env.learner.attempt(k, lp, ls, curr, i, t).state))(keys)))
        return after(items) - before


class RecallThreshold(Policy):
    """Privileged, as the Threshold baseline of Reddy, Levine & Dragan (2017): present the valid
    item whose TRUE current probability of a correct response is closest to ``threshold``
    (review an item just as it is about to be forgotten; new items have low recall and are
    reached once the others are above it). Ties (within 1e-6): designer order."""

    name = "threshold"
    description = "privileged: item whose true recall probability is closest to a threshold (Reddy et al. 2017)"
    privileged = True

    def __init__(self, threshold: float = 0.5):
        if not 0.0 < threshold < 1.0:
            raise PedagogymError(f"threshold: threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)

    def _static_key(self) -> tuple:
        return (self.threshold,)

    def scores(self, key, pstate, view, params, env):
        st = view.latent
        if st is None:
            raise PedagogymError("threshold is privileged: its view needs the latent EnvState (PolicyView.latent)")
        curr = params.curriculum
        items = jnp.arange(curr.n_items, dtype=jnp.int32)
        p = jax.vmap(lambda i: env.learner.p_correct(st.learner, st.student, curr, i, st.history.t))(items)
        return lexicographic(view.action_mask, (-jnp.abs(p - self.threshold), -designer_rank(curr))), pstate
