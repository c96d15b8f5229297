"""The simulation setting of Reddy, Levine & Dragan (2017), built from the project's memory
models with options (no second copy of a model): 30 items, 200 steps, a constant delay of 5
time units between steps, per-item parameters and an initial memory drawn once per
environment sample, a per-step mean-recall reward (:mod:`pedagogym.envs.rewards`).

Step order (their ``StudentEnv._step``): the outcome is drawn from the chosen item's recall
now; the clock advances by the delay; the model logs the review at the new time; the reward
is the mean over items of recall (``"L"``) or of ``log(1e-9 + recall)`` (``"LL"``). ``reset``
makes the first of the 200 steps itself, on a uniformly random item, and returns its
observation, so a tutor chooses 199 items and an episode's score is the mean of their 199
rewards (as in the reference's ``run_ep``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import CurriculumArrays
from pedagogym.envs.rewards import STEP_RECALL_REWARDS
from pedagogym.policies.schedulers import ReviewEvent
from pedagogym.student_models.base import StudentModel
from pedagogym.student_models.dash import DASH
from pedagogym.student_models.efc import EFC, EFCState
from pedagogym.student_models.hlr import HLR, HLRState

N_ITEMS, N_STEPS, DELAY = 30, 200, 5.0


def flashcards(n_items: int) -> CurriculumArrays:
    """One skill per item, every item average (the models' item terms are then neutral)."""
    f = lambda v: jnp.full((n_items,), v, jnp.float32)  # noqa: E731
    return CurriculumArrays(q_matrix=jnp.eye(n_items, dtype=jnp.float32), difficulty=f(0.0), discrimination=f(1.0),
                            guess=f(jnp.nan), slip=f(jnp.nan), kind=jnp.zeros((n_items,), jnp.int32),
                            duration=f(10.0), prereq=jnp.zeros((n_items, n_items), jnp.float32),
                            order=jnp.arange(n_items, dtype=jnp.int32))


class Sample(NamedTuple):
    """One environment sample: the model's params, the initial memory state and (optionally)
    its reward as data: ``ll`` bool[] (True: "LL", False: "L"), so that samples of both
    rewards share one compiled program; None: the env's static ``reward``."""

    params: Any
    memory: Any
    ll: Any = None


@dataclass(frozen=True)
class Simulator:
    """A student model of the paper with its per-sample distribution (``draw``)."""

    name: str  # EFC, HLR, DASH
    model: StudentModel
    n_items: int = N_ITEMS

    def draw(self, key: Array) -> Sample:
        """The reference's ``sample_*`` functions and initial last-review times."""
        n, curr = self.n_items, flashcards(self.n_items)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        base = self.model.default_params(curr)
        normal = lambda k, mu, sd: mu + sd * jax.random.normal(k, (n,), jnp.float32)  # noqa: E731
        if self.name == "EFC":   # theta ~ exp(N(log 0.077, 1)); strength 1, last review exp(N(0, 1))
            params = base._replace(theta=jnp.exp(normal(k1, math.log(0.077), 1.0)))
            memory = EFCState(strength=jnp.ones((n,), jnp.float32), last_review=jnp.exp(normal(k2, 0.0, 1.0)))
        elif self.name == "HLR":  # w = [1, 1, 0] on [attempts, correct, incorrect], item coefs N(0, 1)
            params = base._replace(w_lexeme=normal(k1, 0.0, 1.0))
            z = jnp.zeros((n,), jnp.float32)
            memory = HLRState(n_right=z, n_wrong=z, last_review=jnp.exp(normal(k2, 0.0, 1.0)))
        elif self.name == "DASH":  # difficulty N(1, 1); decay exp(-exp(N(1, 1))); delay coef exp(N(0, .01))
            params = base._replace(difficulty=normal(k1, 1.0, 1.0), decay=jnp.exp(-jnp.exp(normal(k2, 1.0, 1.0))),
                                   delay_coef=jnp.full((n,), jnp.exp(0.01 * jax.random.normal(k3)), jnp.float32))
            memory = self.model.init(key, params, curr)._replace(last_review=jnp.exp(normal(k4, 0.0, 0.01)))
        else:
            raise PedagogymError(f"unknown simulator {self.name!r}")
        return Sample(params=params, memory=memory)


SIMULATORS = {
    "EFC": Simulator("EFC", EFC(p_unseen=0.0)),
    "HLR": Simulator("HLR", HLR(w_bias=0.0, w_right=2.0, w_wrong=1.0, p_unseen=0.0, form="loglinear", all_seen=True)),
    "DASH": Simulator("DASH", DASH(n_windows=5, window_size=N_STEPS // 5)),
}


class EnvState(NamedTuple):
    memory: Any
    t: Array        # float32[] now
    steps: Array    # int32[] steps taken (the reset step included)
    last: ReviewEvent
    done: Array
    hist: Array     # float32[history, 2I + 2] encodings of the last reviews, oldest first (zeros before the start)


@dataclass(frozen=True)
class RecallEnv:
    """The functional env (PedagogyEnv's interface: ``reset``/``step``/``action_mask``/sizes),
    so the project's PPO trains on it unchanged. ``params`` is a :class:`Sample`."""

    sim: Simulator
    reward: str = "L"   # "L" or "LL"
    n_steps: int = N_STEPS
    delay: float = DELAY
    history: int = 1    # reviews in the observation (1: the paper's; more: for a memoryless MLP policy)

    @property
    def n_items(self) -> int:
        return self.sim.n_items

    def n_actions(self, params=None) -> int:
        return self.n_items

    def obs_size(self, params=None) -> int:
        return self.history * (2 * self.n_items + 2)

    def action_mask(self, state: EnvState, params=None) -> Array:
        return jnp.ones((self.n_items,), bool)

    def observe(self, state: EnvState) -> Array:
        """float32[history * (2I + 2)]: the encodings of the last ``history`` reviews."""
        return state.hist.reshape(-1)

    def encode(self, ev: ReviewEvent) -> Array:
        """float32[2I + 2]: one-hot of (item just shown, its outcome), the outcome, log(1 + delay)
        (the paper's observation; the reference embeds the one-hot in 4 random dimensions)."""
        code = ev.item + self.n_items * ev.correct.astype(jnp.int32)
        return jnp.concatenate([jax.nn.one_hot(code, 2 * self.n_items, dtype=jnp.float32),
                                ev.correct.astype(jnp.float32)[None], jnp.log1p(ev.delay)[None]])

    def recall(self, params: Sample, state: EnvState) -> Array:
        return self.sim.model.mastery(params.params, state.memory, flashcards(self.n_items), state.t)

    def _advance(self, key: Array, params: Sample, state: EnvState, item: Array) -> tuple[EnvState, Array]:
        curr = flashcards(self.n_items)
        p = self.sim.model.p_correct(params.params, state.memory, curr, item, state.t)
        correct = jax.random.uniform(key) < p              # NaN (DASH base < 0) reads as wrong, as in numpy
        t = state.t + self.delay
        memory = self.sim.model.learn(key, params.params, state.memory, curr, item, correct, t,
                                      jnp.ones((), jnp.float32))
        steps = state.steps + 1
        last = ReviewEvent(item=item, correct=correct, t=state.t, delay=jnp.asarray(self.delay, jnp.float32))
        hist = jnp.concatenate([state.hist[1:], self.encode(last)[None]], axis=0)
        new = EnvState(memory=memory, t=t, steps=steps, last=last, done=steps >= self.n_steps, hist=hist)
        return new, self.reward_of(params, self.recall(params, new))

    def reward_of(self, params: Sample, recall: Array) -> Array:
        """float32[] the per-step reward: mean recall ("L") or mean log recall ("LL")."""
        if params.ll is None:
            return STEP_RECALL_REWARDS[self.reward](recall)
        return jnp.where(params.ll, STEP_RECALL_REWARDS["LL"](recall), STEP_RECALL_REWARDS["L"](recall))

    def reset(self, key: Array, params: Sample) -> tuple[Array, EnvState]:
        k_item, k_step = jax.random.split(key)
        z = jnp.zeros((), jnp.int32)
        s0 = EnvState(memory=params.memory, t=jnp.zeros((), jnp.float32), steps=z,
                      last=ReviewEvent(item=z, correct=jnp.zeros((), bool), t=jnp.zeros((), jnp.float32),
                                       delay=jnp.zeros((), jnp.float32)), done=jnp.zeros((), bool),
                      hist=jnp.zeros((self.history, 2 * self.n_items + 2), jnp.float32))
        state, _ = self._advance(k_step, params, s0, jax.random.randint(k_item, (), 0, self.n_items))
        return self.observe(state), state

    def step(self, key: Array, state: EnvState, action: Array, params: Sample):
        new, reward = self._advance(key, params, state, jnp.asarray(action, jnp.int32))
        info = {"action_mask": self.action_mask(new), "valid_action": jnp.ones((), bool)}
        return self.observe(new), new, reward.astype(jnp.float32), new.done, jnp.zeros((), bool), info
