"""The policy interface: batched in JAX, one learner per call (``vmap`` for cohorts).

A policy sees a :class:`PolicyView`: the observable history a platform logs, the action
mask and the observation vector. Only ``privileged`` policies (oracles, upper bounds) also
get the env's latent state. Policies keep their own per-learner memory (``PolicyState``,
e.g. Leitner boxes) and update it from the history at each decision, so they work the same
in batched rollouts and in the Gymnasium loop.

    pstate = policy.init(params)                       # once per learner
    action, pstate = policy.act(key, pstate, view, params, env)
"""
from __future__ import annotations

import hashlib
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pedagogym.envs.core import EnvParams, EnvState, PedagogyEnv
from pedagogym.envs.observations import History
from pedagogym.policies.common import skill_rank
from pedagogym.registry import StaticArg

NEG = -1e9


class PolicyView(NamedTuple):
    history: History
    action_mask: Array  # bool[I]
    obs: Array  # float32[D] the env's observation vector
    latent: EnvState | None = None  # only for privileged policies


class Policy(StaticArg):
    """Base class. ``name`` is the registry key; instances are hashable static objects. A
    subclass implements ``scores`` or ``act`` (checked when the class is defined: policies that
    choose by scores and those that choose directly share one base, so neither can be an
    ``abstractmethod``)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    privileged: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._static_key() or ''}"

    def init(self, params: EnvParams) -> Any:
        """Per-learner policy memory (a pytree); default: none."""
        return jnp.zeros((), jnp.float32)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A policy implements ``scores`` (and inherits the masked-argmax ``act``) or ``act``
        itself; one missing both fails when its class is defined."""
        super().__init_subclass__(**kwargs)
        if cls.scores is Policy.scores and cls.act is Policy.act:
            raise TypeError(f"policy {cls.__name__}: implement scores() or act()")

    def scores(self, key: Array, pstate: Any, view: PolicyView, params: EnvParams, env: PedagogyEnv) -> tuple[Array, Any]:
        """float32[I] preference per item (higher = better) and the new policy memory."""
        raise TypeError(f"policy {type(self).__name__} chooses with act() and has no scores()")

    def act(self, key: Array, pstate: Any, view: PolicyView, params: EnvParams, env: PedagogyEnv) -> tuple[Array, Any]:
        """int32[] the chosen item (always a valid one) and the new policy memory."""
        s, pstate = self.scores(key, pstate, view, params, env)
        return masked_argmax(s, view.action_mask), pstate


def weights_fingerprint(*trees: Any) -> str:
    """sha256 of pytrees of concrete arrays (structure, dtypes, shapes and bytes): the identity of a
    policy's weights, so that two policies hash and compare equal only when their weights are
    the same (a static ``jit`` argument or an ``lru_cache`` key must never reuse another's
    weights). Traced arrays cannot be fingerprinted (``np.asarray`` raises)."""
    h = hashlib.sha256()
    for tree in trees:
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        h.update(str(treedef).encode())
        for leaf in leaves:
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def masked_argmax(scores: Array, mask: Array) -> Array:
    """Index of the best valid score (ties -> lowest index)."""
    return jnp.argmax(jnp.where(mask, scores, NEG)).astype(jnp.int32)


def random_tiebreak(key: Array, n: int) -> Array:
    """Tiny noise to break ties at random without changing strict preferences."""
    return 1e-4 * jax.random.uniform(key, (n,))


class RandomPolicy(Policy):
    name = "random"
    description = "a uniformly random valid item"

    def scores(self, key, pstate, view, params, env):
        return jax.random.uniform(key, view.action_mask.shape), pstate


class DesignerOrder(Policy):
    """The curriculum's sequence: each item in the designer's order, repeated for
    ``repeats`` presentations before moving on, cycling when the list is done. A locked
    item is skipped for the next valid one in order."""

    name = "designer"
    description = "the curriculum designer's order, each item `repeats` times, then cycling"

    def __init__(self, repeats: int = 2):
        self.repeats = repeats

    def _static_key(self) -> tuple:
        return (self.repeats,)

    def scores(self, key, pstate, view, params, env):
        order = params.curriculum.order
        n = order.shape[0]
        pos = (view.history.step // self.repeats) % n  # position in the order we are at
        rank = (jnp.arange(n) - pos) % n  # distance ahead along the order
        s = jnp.zeros((n,), jnp.float32).at[order].set(-rank.astype(jnp.float32))
        return s, pstate


class RoundRobin(Policy):
    name = "round_robin"
    description = "cycle through skills in topological order, least-practised item of the skill"

    def scores(self, key, pstate, view, params, env):
        curr = params.curriculum
        h = view.history
        target = h.step % curr.n_skills  # skills in the order their first item appears in the designer's order
        on_target = curr.q_matrix @ (skill_rank(curr) == target).astype(jnp.float32)
        return on_target * 10.0 - h.item_attempts * 0.01 + random_tiebreak(key, curr.n_items), pstate
