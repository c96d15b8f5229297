"""Imitation warm start: behaviour cloning of a hand-written teacher, before PPO fine-tuning.

    data = teacher_data(env, params, teacher, horizon, keys, gamma)      # the teacher's episodes
    params, obs_norm, loss = behaviour_clone(spec, key, data, steps, lr, batch)
    agreement(spec, params, obs_norm, data)                              # fraction of the teacher's choices

Pure JAX (one ``jit`` with the rest of ``PPOTrainer.init``): the teacher meets ``N`` simulated
learners for a whole episode (the experiment runner's view of each step, so a privileged
teacher reads the latent state while the student records only the observation); the actor
is fitted by cross-entropy of its masked logits on the teacher's items, the critic by squared
error on the teacher's discounted returns (so PPO's first advantages are not noise), and the
observation statistics are those of the teacher's observations. A policy that agrees with the
teacher on nearly every decision starts PPO at the teacher's performance (Ross & Bagnell 2010
bound the gap by the disagreement rate times the horizon).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from pedagogym.agents.networks import NetworkSpec, ObsNorm, masked_logits, normalize


class TeacherData(NamedTuple):
    """The teacher's episodes, learner-major (``N`` learners, ``T`` steps, ``D`` obs, ``A`` items).

    obs: float32[N, T, D] raw;  mask: bool[N, T, A];  action: int32[N, T];  alive: bool[N, T]
    (the step happened: the episode had not ended);  ret: float32[N, T] discounted return from
    the step on;  reset: bool[N, T] the step is the episode's first."""

    obs: Array
    mask: Array
    action: Array
    alive: Array
    ret: Array
    reset: Array


def teacher_data(env, params, teacher, horizon: int, keys: Array, gamma: Array, potential=None) -> TeacherData:
    """One teacher episode per key (``keys`` uint32[N, 2]) on ``env``; see :class:`TeacherData`.
    ``potential`` (EnvState -> float32[], optional): the shaping potential PPO adds
    (``r + gamma phi(s') - phi(s)``, zero at the end), so ``ret`` is the shaped return
    ``return - phi(s_t)`` the critic will be trained on."""
    from pedagogym.policies.rollout import Step, play_episode

    def emit(s: Step):
        phi = jnp.zeros((), jnp.float32) if potential is None else potential(s.state)
        return s.view.obs, s.view.action_mask, s.action, s.active, s.reward, phi

    def episode(key):
        _, (obs, mask, action, alive, reward, phi) = play_episode(env, teacher, params, key, horizon, emit)

        def disc(g, x):
            r, a = x
            g = jnp.where(a, r + gamma * g, 0.0)
            return g, g

        _, ret = jax.lax.scan(disc, jnp.zeros((), jnp.float32), (reward, alive), reverse=True)
        return TeacherData(obs, mask, action, alive, jnp.where(alive, ret - phi, 0.0), jnp.arange(horizon) == 0)

    return jax.vmap(episode)(keys)


def data_obs_norm(data: TeacherData) -> ObsNorm:
    """Mean / variance of the teacher's observations (alive steps only)."""
    w = data.alive.astype(jnp.float32)[..., None]
    n = jnp.maximum(w.sum(), 1.0)
    mean = (data.obs * w).sum((0, 1)) / n
    var = (((data.obs - mean) ** 2) * w).sum((0, 1)) / n
    return ObsNorm(mean.astype(jnp.float32), var.astype(jnp.float32), n.astype(jnp.float32))


def _forward(spec: NetworkSpec, params: Any, x: Array, reset: Array) -> tuple[Array, Array]:
    """Normalised ``x`` float32[B, T, D] -> (logits float32[B, T, A], value float32[B, T])."""
    net = spec.module()
    if spec.recurrent:
        xt, rt = jnp.swapaxes(x, 0, 1), jnp.swapaxes(reset, 0, 1)
        _, logits, value = net.apply(params, spec.initial_carry(x.shape[0]), xt, rt)
        return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(value, 0, 1)
    return net.apply(params, x)


def behaviour_clone(spec: NetworkSpec, key: Array, data: TeacherData, steps: int, lr: float, batch: int,
                    normalize_obs: bool = True, vf_coef: float = 0.5) -> tuple[Any, ObsNorm, Array]:
    """Fit a fresh network (``spec``, initialised from ``key``) to the teacher: ``steps`` Adam
    steps on minibatches of ``batch`` episodes (whole episodes, so a GRU sees sequences).
    Returns (params, obs statistics, float32[steps] loss)."""
    k_init, k_steps = jax.random.split(key)
    params = spec.init_params(k_init)
    norm = data_obs_norm(data) if normalize_obs else None
    x_all = normalize(norm, data.obs)
    n = data.obs.shape[0]
    b = min(batch, n)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))

    def loss_fn(p, idx):
        x, mask, act = x_all[idx], data.mask[idx], data.action[idx]
        w = data.alive[idx].astype(jnp.float32)
        logits, value = _forward(spec, p, x, data.reset[idx])
        logp = jax.nn.log_softmax(masked_logits(logits, mask))
        nll = -jnp.take_along_axis(logp, act[..., None], -1)[..., 0]
        vloss = (value - data.ret[idx]) ** 2
        return jnp.sum(w * (nll + vf_coef * vloss)) / jnp.maximum(w.sum(), 1.0)

    def step(carry, k):
        p, s = carry
        idx = jax.random.choice(k, n, (b,), replace=False)
        loss, g = jax.value_and_grad(loss_fn)(p, idx)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_steps, steps))
    return params, (norm if norm is not None else ObsNorm.initial(spec.obs_size)), losses


def agreement(spec: NetworkSpec, params: Any, obs_norm: ObsNorm | None, data: TeacherData) -> Array:
    """float32[] fraction of the teacher's decisions (alive steps) where the network's masked
    argmax picks the teacher's item."""
    logits, _ = _forward(spec, params, normalize(obs_norm, data.obs), data.reset)
    pick = jnp.argmax(masked_logits(logits, data.mask), -1)
    w = data.alive.astype(jnp.float32)
    return jnp.sum(w * (pick == data.action)) / jnp.maximum(w.sum(), 1.0)
