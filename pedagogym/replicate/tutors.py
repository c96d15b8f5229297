"""The tutors of the replication and their episode loop (jit + vmap over environment samples,
grid values and episodes)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pedagogym.policies.memorize import Memorize
from pedagogym.policies.schedulers import LeitnerQueueNetwork, ReviewEvent, SM2Mnemosyne, ThresholdTutor
from pedagogym.replicate.setting import RecallEnv, Sample, flashcards

GRID = np.round(np.arange(0.0, 1.0, 0.01), 2).astype(np.float32)  # the reference's np.arange(0, 1, 0.01)
Q_GRID = (10.0 ** np.linspace(-3.0, 3.0, 100)).astype(np.float32)  # Memorize's review cost q (log grid)


class RandomTutor:
    name, tuned, persistent = "random", None, False

    def __init__(self, n_items: int):
        self.n_items = n_items

    def init(self, key, oracle=None, knob=None):
        return jnp.zeros((), jnp.int32)

    def act(self, key: Array, s, ev: ReviewEvent, knob=None, oracle=None):
        return jax.random.randint(key, (), 0, self.n_items), s


class Hand(NamedTuple):
    """A hand-written tutor of the study: its label, object and tuning grid (None: untuned)."""

    label: str
    tutor: object
    grid: np.ndarray | None
    privileged: bool = False


def hand_tutors(env: RecallEnv) -> list[Hand]:
    n, curr, model = env.n_items, flashcards(env.n_items), env.sim.model
    return [
        Hand("Random", RandomTutor(n), None),
        Hand("Leitner", LeitnerQueueNetwork(n, env.n_steps), GRID),
        Hand("SuperMnemo", SM2Mnemosyne(n, env.n_steps), None),
        Hand("Threshold", ThresholdTutor(model, curr, n, env.delay, notebook_clock=True), GRID, privileged=True),
        Hand("Memorize", Memorize(model, curr, n, env.n_steps, env.delay), Q_GRID, privileged=True),
    ]


def episode(env: RecallEnv, tutor, knob: Array, sample: Sample, key: Array, tstate=None):
    """(score, tutor state): one episode, score = mean reward of the tutor's n_steps - 1 choices."""
    k_reset, k_init, k_steps = jax.random.split(key, 3)
    _, es = env.reset(k_reset, sample)
    ts = tutor.init(k_init, sample, knob) if tstate is None else tstate

    def body(carry, k):
        es, ts = carry
        k_act, k_env = jax.random.split(k)
        item, ts = tutor.act(k_act, ts, es.last, knob, sample)
        es, r = env._advance(k_env, sample, es, item)
        return (es, ts), r

    (_, ts), rewards = jax.lax.scan(body, (es, ts), jax.random.split(k_steps, env.n_steps - 1))
    return jnp.mean(rewards), ts


def episodes(env: RecallEnv, tutor, knob: Array, sample: Sample, key: Array, n: int) -> Array:
    """float32[n] scores of n episodes (a tutor with ``persistent`` memory runs them in order)."""
    keys = jax.random.split(key, n)
    if not tutor.persistent:
        return jax.vmap(lambda k: episode(env, tutor, knob, sample, k)[0])(keys)
    ts0 = tutor.init(key, sample, knob)

    def body(ts, k):
        score, ts = episode(env, tutor, knob, sample, k, tutor.new_episode(ts))
        return ts, score

    return jax.lax.scan(body, ts0, keys)[1]


def tune_and_evaluate(env: RecallEnv, hand: Hand, sample: Sample, key: Array, n_eval: int, n_tune: int):
    """(best grid value, float32[n_eval] scores): the reference's ``train``: ``n_tune`` episodes per
    grid value, the first best value kept, then ``n_eval`` episodes with it."""
    k_tune, k_eval = jax.random.split(key)
    if hand.grid is None:
        return jnp.zeros((), jnp.float32), episodes(env, hand.tutor, jnp.zeros((), jnp.float32), sample, k_eval, n_eval)
    grid = jnp.asarray(hand.grid)
    keys = jax.random.split(k_tune, grid.shape[0])
    tuned = jax.vmap(lambda g, k: jnp.mean(episodes(env, hand.tutor, g, sample, k, n_tune)))(grid, keys)
    best = grid[jnp.argmax(tuned)]  # argmax: the first maximum, like the reference's strict ">"
    return best, episodes(env, hand.tutor, best, sample, k_eval, n_eval)


def tune_and_evaluate_samples(env: RecallEnv, hand: Hand, samples: Sample, keys: Array, n_eval: int, n_tune: int
                              ) -> tuple[np.ndarray, np.ndarray]:
    """(float32[S] best grid values, float32[S, n_eval] scores): :func:`tune_and_evaluate` for a
    batch of ``S`` environment samples (leading axis of ``samples`` and ``keys``), the same
    episodes with the same keys, compiled once instead of twice.

    For a tuned tutor without memory across episodes, both phases are a batch of single
    episodes, each with its own grid value and key: tuning ``len(grid) x n_tune`` of them, the
    evaluation ``n_eval`` with the chosen value. One program (``episode`` vmapped over a batch
    padded to the larger of the two; padding episodes are discarded) serves both calls, which
    halves the compilation that dominates a small study. Other tutors take the two-phase path."""
    if hand.grid is None or hand.tutor.persistent:
        fn = jax.jit(jax.vmap(lambda s, k: tune_and_evaluate(env, hand, s, k, n_eval, n_tune)))
        best, scores = fn(samples, keys)
        return np.asarray(best), np.asarray(scores)
    grid = np.asarray(hand.grid, np.float32)
    n_grid = grid.shape[0]
    batch = max(n_grid * n_tune, n_eval)
    pairs = jax.vmap(jax.random.split)(keys)                      # [S, 2]: k_tune, k_eval per sample
    k_tune, k_eval = pairs[:, 0], pairs[:, 1]
    per_value = jax.vmap(lambda k: jax.random.split(k, n_grid))(k_tune)                  # [S, G]
    tune_keys = jax.vmap(jax.vmap(lambda k: jax.random.split(k, n_tune)))(per_value)     # [S, G, n_tune]
    tune_keys = tune_keys.reshape(keys.shape[0], n_grid * n_tune, *keys.shape[1:])
    eval_keys = jax.vmap(lambda k: jax.random.split(k, n_eval))(k_eval)                  # [S, n_eval]

    def pad(a: Array) -> Array:  # [S, m, ...] -> [S, batch, ...], repeating the first entry
        extra = batch - a.shape[1]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[:, :1], extra, axis=1)], axis=1)

    run = jax.jit(jax.vmap(lambda s, g, k: jax.vmap(lambda gi, ki: episode(env, hand.tutor, gi, s, ki)[0])(g, k)))
    n_s = keys.shape[0]
    knobs = jnp.broadcast_to(jnp.repeat(jnp.asarray(grid), n_tune)[None], (n_s, n_grid * n_tune))
    tuned = np.asarray(run(samples, pad(knobs), pad(tune_keys)))[:, : n_grid * n_tune]
    tuned = tuned.reshape(n_s, n_grid, n_tune).mean(axis=2)
    best = grid[np.argmax(tuned, axis=1)]  # argmax: the first maximum, like the reference's strict ">"
    scores = np.asarray(run(samples, jnp.broadcast_to(jnp.asarray(best)[:, None], (n_s, batch)), pad(eval_keys)))
    return best, scores[:, :n_eval]
