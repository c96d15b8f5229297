"""Memorize (Tabibian, Upadhyay, De, Zarezade, Schölkopf & Gomez-Rodriguez 2019, PNAS,
"Enhancing human learning via spaced repetition optimization").

The optimal review intensity of an item under an exponential-forgetting memory model is
``u(t) = q**-0.5 * (1 - m(t))`` (their eq. 9), with ``m(t)`` the recall probability and ``q``
the cost of reviewing. Their Algorithm 1 draws each item's next review time from this
intensity after each review of it (thinning). Made discrete for a tutor that shows one item
per step (one implementation, :class:`MemorizeClock`, shared by the event tutor of the
replication and the registered policy of the flashcard envs):

- after each review of an item, its clock restarts: accumulated intensity ``H = 0`` and a
  fresh budget ``E ~ Exp(1)`` (the item's next review time is when ``H`` reaches ``E``);
- between decisions every item's ``H`` grows by ``u(t) * dt`` (recall at the decision time);
- each step shows the item that is most overdue, ``(H - E) / u`` (the time since ``H``
  passed ``E`` at the current intensity), which, when no item is due, is the item due soonest.

``q`` scales every intensity alike, so it changes the choice only through the balance of the
accumulated intensity and the random budgets (small ``q``: the deterministic ``H / u`` order;
large ``q``: the draws); it is tuned on a grid like the other tutors.

``m`` is read from the true memory model (privileged, like the Threshold tutor; the paper
assumes a fitted model of the learner).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.policies.base import Policy, masked_argmax
from pedagogym.policies.common import last_response
from pedagogym.policies.schedulers import ReviewEvent
from pedagogym.student_models.base import StudentModel

TINY = 1e-12


def review_intensity(recall: Array, q: Array) -> Array:
    """Tabibian et al. (2019) eq. (9): ``u = q**-0.5 * (1 - m)``."""
    return (1.0 - jnp.clip(recall, 0.0, 1.0)) / jnp.sqrt(q)


class MemorizeClock(NamedTuple):
    """Per item: accumulated review intensity since its last review and its Exp(1) budget."""

    hazard: Array  # float32[I]
    budget: Array  # float32[I]

    @staticmethod
    def start(key: Array, n_items: int) -> "MemorizeClock":
        return MemorizeClock(hazard=jnp.zeros((n_items,), jnp.float32), budget=jax.random.exponential(key, (n_items,)))

    def elapse(self, recall: Array, dt: Array, q: Array) -> "MemorizeClock":
        """Every item's intensity at ``recall`` (float32[I]) for ``dt`` time units."""
        return self._replace(hazard=self.hazard + review_intensity(recall, q) * jnp.maximum(dt, 0.0))

    def reviewed(self, key: Array, item: Array, new: Array = True) -> "MemorizeClock":
        """Restart ``item``'s clock (where ``new``): ``H = 0`` and a fresh budget."""
        e = jax.random.exponential(key, ())
        return MemorizeClock(hazard=self.hazard.at[item].set(jnp.where(new, 0.0, self.hazard[item])),
                             budget=self.budget.at[item].set(jnp.where(new, e, self.budget[item])))

    def overdue(self, recall: Array, q: Array) -> Array:
        """float32[I] ``(H - E) / u``: how long each item has been due (negative: due in)."""
        return (self.hazard - self.budget) / jnp.maximum(review_intensity(recall, q), TINY)


# ---- the replication's event tutor (one logged review at a time; pedagogym.replicate) ----------
class MemorizeState(NamedTuple):
    memory: Any           # the memory model's state as the tutor tracks it
    clock: MemorizeClock


class Memorize:
    """Event tutor (the interface of :mod:`pedagogym.policies.schedulers`' ``ThresholdTutor``):
    ``oracle`` is the environment sample (``.params``, ``.memory``); ``knob`` is ``q``."""

    name = "memorize"
    tuned = "q"
    persistent = False

    def __init__(self, model: StudentModel, curr, n_items: int, n_steps: int, delay: float):
        self.model, self.curr = model, curr
        self.n_items, self.n_steps, self.delay = int(n_items), int(n_steps), float(delay)

    def init(self, key: Array, oracle, q: Array) -> MemorizeState:
        return MemorizeState(memory=oracle[1], clock=MemorizeClock.start(key, self.n_items))

    def act(self, key: Array, s: MemorizeState, ev: ReviewEvent, knob: Array, oracle):
        params = oracle[0]
        t_now = ev.t + ev.delay
        memory = self.model.learn(key, params, s.memory, self.curr, ev.item, ev.correct, t_now,
                                  jnp.ones((), jnp.float32))
        recall = self.model.mastery(params, memory, self.curr, t_now)
        clock = s.clock.elapse(recall, ev.delay, knob).reviewed(key, ev.item)
        return jnp.argmax(clock.overdue(recall, knob)).astype(jnp.int32), MemorizeState(memory=memory, clock=clock)


# ---- the registered policy of the standard envs (PolicyView) ------------------------------------
class MemorizePolicyState(NamedTuple):
    clock: MemorizeClock
    t_prev: Array    # float32[] time (days) of the previous decision
    n_seen: Array    # float32[] responses folded in
    started: Array   # bool[] budgets drawn


class MemorizePolicy(Policy):
    """Memorize on the standard envs: the same :class:`MemorizeClock`, with recall read from
    the env's latent learner at the current time (days)."""

    name = "memorize"
    description = "privileged: Memorize (Tabibian et al. 2019), review intensity (1 - recall) / sqrt(q)"
    privileged = True

    def __init__(self, q: float = 1.0):
        if not q > 0:
            raise PedagogymError(f"memorize: q must be > 0, got {q}")
        self.q = float(q)

    def _static_key(self) -> tuple:
        return (self.q,)

    def init(self, params):
        n = params.curriculum.n_items
        z = jnp.zeros((), jnp.float32)
        return MemorizePolicyState(clock=MemorizeClock(jnp.zeros((n,), jnp.float32), jnp.ones((n,), jnp.float32)),
                                   t_prev=z, n_seen=z, started=jnp.zeros((), bool))

    def scores(self, key, ps, view, params, env):
        st = view.latent
        if st is None:
            raise PedagogymError("memorize is privileged: its view needs the latent EnvState (PolicyView.latent)")
        curr = params.curriculum
        k_start, k_review = jax.random.split(key)
        h = view.history
        q = jnp.float32(self.q)
        fresh = MemorizeClock.start(k_start, curr.n_items)
        clock = jax.tree.map(lambda a, b: jnp.where(ps.started, a, b), ps.clock, fresh)
        recall = jax.vmap(lambda i: env.learner.p_correct(st.learner, st.student, curr, i, h.t))(
            jnp.arange(curr.n_items, dtype=jnp.int32))
        r = last_response(ps.n_seen, h, curr)
        clock = clock.elapse(recall, h.t - ps.t_prev, q).reviewed(k_review, r.item, r.new)
        ps = MemorizePolicyState(clock=clock, t_prev=h.t, n_seen=r.n_total, started=jnp.ones((), bool))
        return clock.overdue(recall, q), ps

    def act(self, key, pstate, view, params, env):
        s, pstate = self.scores(key, pstate, view, params, env)
        return masked_argmax(s, view.action_mask), pstate
