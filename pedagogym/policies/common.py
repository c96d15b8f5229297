"""Helpers shared by the hand-written policies (pure JAX, one learner).

Policies keep per-learner memory and update it from the logged history at each decision.
:func:`last_response` tells whether a new presentation was logged since the memory was last
updated (``n_seen``: presentations already folded in) and what it was.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array

from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.envs.observations import History
from pedagogym.student_models.learner import OBSERVED_KINDS


class Response(NamedTuple):
    """The latest logged presentation (meaningful only where ``new``).

    new:         bool[]    a presentation was logged since the policy last looked
    item:        int32[]   the presented item (0 if none yet)
    correct:     bool[]    correct (study-only kinds, whose response a platform does not
                           record, count as a successful exposure)
    observed:    bool[]    the item's kind has a recorded correct/incorrect response
    rt:          float32[] response time in seconds
    t:           float32[] day of the presentation
    n_total:     float32[] presentations logged so far (the next ``n_seen``)
    """

    new: Array
    item: Array
    correct: Array
    observed: Array
    rt: Array
    t: Array
    n_total: Array


def observed_kind(curr: CurriculumArrays, item: Array) -> Array:
    """bool[] the platform records correct/incorrect for ``item``'s kind."""
    return jnp.any(curr.kind[item] == jnp.asarray([int(k) for k in OBSERVED_KINDS]))


def last_response(n_seen: Array, h: History, curr: CurriculumArrays) -> Response:
    n_total = jnp.sum(h.item_attempts)
    item = jnp.maximum(h.last_item, 0).astype(jnp.int32)
    observed = observed_kind(curr, item)
    return Response(
        new=(n_total > n_seen) & (h.last_item >= 0),
        item=item,
        correct=jnp.where(observed, h.last_correct > 0.5, True),
        observed=observed,
        rt=h.last_rt,
        t=h.item_last_t[item],
        n_total=n_total,
    )


def update_at(new: Array, arr: Array, item: Array, value: Array) -> Array:
    """``arr`` with ``arr[item] = value`` where ``new``, else unchanged."""
    return arr.at[item].set(jnp.where(new, value, arr[item]))


def prerequisites_mastered(mastered: Array, curr: CurriculumArrays) -> Array:
    """bool[S] the skills all of whose prerequisites are ``mastered`` (bool[S]): mastery's
    unlock rule (Corbett & Anderson 1995)."""
    return jnp.all((curr.prereq <= 0) | mastered[None, :], axis=1)


def designer_rank(curr: CurriculumArrays) -> Array:
    """float32[I] position of each item in the designer's order (0 = first)."""
    n = curr.n_items
    return jnp.zeros((n,), jnp.float32).at[curr.order].set(jnp.arange(n, dtype=jnp.float32))


def skill_rank(curr: CurriculumArrays) -> Array:
    """int32[S] rank of each skill by the first appearance of its items in the designer's
    order (topological when the order is the derived one)."""
    first_pos = jnp.min(jnp.where(curr.q_matrix[curr.order] > 0, jnp.arange(curr.n_items)[:, None], curr.n_items), axis=0)
    return jnp.argsort(jnp.argsort(first_pos)).astype(jnp.int32)


def new_item_preference(curr: CurriculumArrays) -> Array:
    """float32[I] in (0, 1]: 1 for the designer's first item, decreasing along the order."""
    return 1.0 - designer_rank(curr) / (curr.n_items + 1.0)


def lexicographic(mask: Array, keys: tuple[Array, ...], tol: float = 1e-6) -> Array:
    """float32[I] scores whose masked argmax is the lexicographic best valid item: the
    largest ``keys[0]``, among those within ``tol`` of it the largest ``keys[1]``, and so on.
    The first key (an item's main preference) is kept as the base score of every item."""
    cand = mask
    for k in keys:
        best = jnp.max(jnp.where(cand, k, -jnp.inf))
        cand = cand & (k >= best - tol)
    return jnp.where(cand, 1e6, 0.0) + keys[0]
