"""Memorize (Tabibian, Upadhyay, De, Zarezade, Schölkopf & Gomez-Rodriguez 2019, PNAS,
"Enhancing human learning via spaced repetition optimization").

The optimal review intensity of an item under an exponential-forgetting memory model is
``u(t) = q**-0.5 * (1 - m(t))``, with ``m(t)`` the recall probability and ``q`` the cost
of reviewing (smaller q: more reviews). Algorithm 1 of the paper samples each item's next
review time from this intensity after each review (thinning). Made discrete for a tutor
that shows one item per step: after each review of an item, its next review time is drawn
from ``u`` on the step grid (an exponential budget ``E ~ Exp(1)``; the first future step at
which the cumulative intensity ``sum_k u(t_k) * delay`` reaches ``E``), and each step shows
the item whose drawn time is earliest (overdue items first, by how long overdue). Since
every item's intensity scales with ``q**-0.5``, ``q`` changes which item's time comes first
only through the shape of each recall curve; it is tuned on a grid like the other tutors.

``m`` is read from the simulator's true memory model (the paper assumes a fitted model of the
learner; here the tutor is privileged, like the Threshold tutor), updated from the logged
reviews at the true review times.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.policies.schedulers import ReviewEvent
from pedagogym.student_models.base import StudentModel


class MemorizeState(NamedTuple):
    memory: Any      # the memory model's state as the tutor tracks it
    t: Array         # float32[] the tutor's clock
    due: Array       # float32[I] each item's drawn next review time


def review_intensity(recall: Array, q: Array) -> Array:
    """Tabibian et al. (2019) eq. (9): ``u = q**-0.5 * (1 - m)``."""
    return (1.0 - recall) / jnp.sqrt(q)


class Memorize:
    """One item per step by earliest Memorize review time (module docstring). ``oracle`` is
    ``(model_params, initial_memory_state)`` of the environment sample."""

    name = "memorize"
    tuned = "q"
    persistent = False

    def __init__(self, model: StudentModel, curr, n_items: int, n_steps: int, delay: float):
        self.model, self.curr = model, curr
        self.n_items, self.n_steps, self.delay = int(n_items), int(n_steps), float(delay)

    def init(self, key: Array, oracle, q: Array) -> MemorizeState:
        """Every item's first review time, drawn at time 0 from the initial memory."""
        params, memory = oracle
        t = jnp.zeros((), jnp.float32)
        due = self.draw_due(key, params, memory, t, q, jnp.arange(self.n_items, dtype=jnp.int32))
        return MemorizeState(memory=memory, t=t, due=due)

    def draw_due(self, key: Array, params, memory, t: Array, q: Array, items: Array) -> Array:
        """float32[len(items)] next review times of ``items`` drawn from the intensity from ``t`` on."""
        k = jnp.arange(1, self.n_steps + 1, dtype=jnp.float32)
        times = t + k * self.delay
        budget = jax.random.exponential(key, items.shape)

        def one(item, e):
            m = jax.vmap(lambda tt: self.model.p_correct(params, memory, self.curr, item, tt))(times)
            cum = jnp.cumsum(review_intensity(jnp.clip(m, 0.0, 1.0), q) * self.delay)
            hit = cum >= e
            first = jnp.argmax(hit)
            return jnp.where(jnp.any(hit), times[first], times[-1] + self.delay * (1.0 + e))

        return jax.vmap(one)(items, budget)

    def act(self, key: Array, s: MemorizeState, ev: ReviewEvent, knob: Array, oracle):
        params = oracle[0]
        memory = s.memory
        t_now = ev.t + ev.delay
        memory = self.model.learn(key, params, memory, self.curr, ev.item, ev.correct, t_now,
                                  jnp.ones((), jnp.float32))
        due = s.due.at[ev.item].set(self.draw_due(key, params, memory, t_now, knob, ev.item[None])[0])
        return jnp.argmin(due).astype(jnp.int32), MemorizeState(memory=memory, t=t_now, due=due)
