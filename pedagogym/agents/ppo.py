"""PPO in pure JAX, PureJaxRL style: the whole training loop is one ``jit``.

    train = make_train(config)                    # config: TrainConfig
    state, metrics = jax.jit(train)(jax.random.PRNGKey(0))
    # many agents at once: seeds x hyperparameters, one compiled call
    trainer = PPOTrainer(config)
    states, metrics = jax.jit(jax.vmap(trainer.train))(keys, hparams)   # hparams: HParams with a leading axis

One update: a ``lax.scan`` of ``num_steps`` batched env steps (``num_envs`` learners, the one
auto-reset of :func:`pedagogym.envs.wrappers.batch_step`), GAE, then ``epochs`` x
``minibatches`` clipped-objective updates. Actions are sampled from logits masked with the
env's action mask (``info["action_mask"]``), so a locked item is never chosen. Observations
are standardised with running statistics kept in the train state (:class:`ObsNorm`), saved
with the parameters and applied by the deployed policy.

Hyperparameters that may differ between agents (:class:`HParams`: learning rate, entropy
coefficient, clip, ...) are traced values in the state, so a sweep is a ``vmap``. Episodes
end at the horizon or when the learner masters everything or drops out; the horizon is part
of the task (the observation holds ``progress``), so truncation is treated as terminal.
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from pedagogym.errors import PedagogymError
from pedagogym.agents.config import SWEEPABLE, TrainConfig
from pedagogym.agents.networks import NetworkSpec, ObsNorm, masked_entropy, masked_logits, normalize, policy_forward
from pedagogym.envs.core import EnvState
from pedagogym.envs.wrappers import batch_step


class HParams(NamedTuple):
    """Per-agent hyperparameters (float32[] each, or float32[N] for N agents)."""

    lr: Array
    ent_coef: Array
    clip: Array
    vf_coef: Array
    gamma: Array
    gae_lambda: Array
    max_grad_norm: Array

    @classmethod
    def of(cls, values: dict[str, float]) -> "HParams":
        return cls(**{k: jnp.asarray(values[k], jnp.float32) for k in SWEEPABLE})


class RunnerState(NamedTuple):
    """Everything training carries from one update to the next (one agent; leading axis N for many).

    params:    network parameters;  opt_state: Adam moments;  obs_norm: running obs statistics
    env_state: EnvState[E];  obs: float32[E, D] raw current observations;  mask: bool[E, A]
    carry:     float32[E, H] GRU state (float32[E, 1] unused for MLPs)
    reset:     bool[E] the current observation is a new learner's first
    ep_return: float32[E] return so far of each running episode
    key:       PRNG key;  update: int32[] updates done;  hparams: HParams
    """

    params: Any
    opt_state: Any
    obs_norm: ObsNorm
    env_state: EnvState
    obs: Array
    mask: Array
    carry: Array
    reset: Array
    ep_return: Array
    key: Array
    update: Array
    hparams: HParams


class Transition(NamedTuple):
    obs: Array  # float32[E, D] normalised
    mask: Array  # bool[E, A]
    reset: Array  # bool[E]
    action: Array  # int32[E]
    logp: Array  # float32[E]
    value: Array  # float32[E]
    reward: Array  # float32[E]
    done: Array  # bool[E]


class UpdateMetrics(NamedTuple):
    """Per update (float32[] each)."""

    episode_return_sum: Array
    episodes: Array
    reward_mean: Array
    policy_loss: Array
    value_loss: Array
    entropy: Array
    approx_kl: Array
    clip_frac: Array
    lr: Array
    invalid_actions: Array  # fraction of sampled actions that were locked items (0 with masking)


def network_spec(config: TrainConfig, built) -> NetworkSpec:
    return NetworkSpec(obs_size=built.env.obs_size(built.params), n_actions=built.env.n_actions(built.params),
                       hidden=config.hidden, activation=config.activation, recurrent=config.recurrent,
                       gru_size=config.gru_size)


class PPOTrainer:
    """Builds the pure functions of one PPO configuration (env, network, optimiser are static)."""

    def __init__(self, config: TrainConfig, built=None):
        self.config = config
        self.built = built if built is not None else config.build_env()
        self.env, self.env_params = self.built.env, self.built.params
        self.spec = network_spec(config, self.built)
        self.net = self.spec.module()
        self.optimizer = optax.scale_by_adam(eps=1e-5)

    # ---- agents ---------------------------------------------------------------------------
    def agent_keys(self) -> Array:
        """uint32[N, 2]: agent ``k`` starts from ``PRNGKey(seed_k)`` (agents that differ only
        in hyperparameters share initial weights and learners: paired comparisons)."""
        return jnp.stack([jax.random.PRNGKey(a["seed"]) for a in self.config.agents()])

    def agent_hparams(self) -> HParams:
        """HParams with a leading axis N (one entry per agent of the config)."""
        agents = self.config.agents()
        return HParams(**{k: jnp.asarray([a[k] for a in agents], jnp.float32) for k in SWEEPABLE})

    def default_hparams(self) -> HParams:
        return HParams.of({k: getattr(self.config, k) for k in SWEEPABLE})

    # ---- pure functions -----------------------------------------------------------------------
    def initial_params(self, key: Array) -> Any:
        """The network parameters ``init(key)`` starts from (the untrained policy)."""
        return self.spec.init_params(jax.random.split(key, 3)[0])

    def potential(self, state: EnvState) -> Array:
        """float32[] the shaping potential of one env state: ``shaping`` x mean belief."""
        return self.config.shaping * jnp.mean(state.history.belief)

    def warm_start(self, key: Array, gamma: Array):
        """(params, obs statistics, loss curve, teacher data) of behaviour cloning of the
        config's teacher (``init = "imitate:NAME"``), see :mod:`pedagogym.agents.imitation`."""
        from pedagogym.agents.imitation import behaviour_clone, teacher_data
        from pedagogym.policies.rollout import learner_keys
        from pedagogym.policies import POLICIES

        cfg = self.config
        k_data, k_fit = jax.random.split(key)
        teacher = POLICIES.get(cfg.teacher)
        data = teacher_data(self.env, self.env_params, teacher, self.built.config.horizon,
                            learner_keys(k_data, cfg.imitate_learners), gamma,
                            self.potential if cfg.shaping > 0 else None)
        params, norm, losses = behaviour_clone(self.spec, k_fit, data, cfg.imitate_steps, cfg.imitate_lr,
                                               cfg.imitate_batch, cfg.normalize_obs)
        return params, norm, losses, data

    def warm_params(self, key: Array, hparams: HParams | None = None) -> tuple[Any, ObsNorm]:
        """(params, obs statistics) that agent ``key`` starts PPO from with a teacher: the
        behaviour clone (:meth:`warm_start`)."""
        hparams = self.default_hparams() if hparams is None else hparams
        params, obs_norm, _, _ = self.warm_start(jax.random.fold_in(jax.random.split(key, 3)[0], 1), hparams.gamma)
        return params, obs_norm

    def init(self, key: Array, hparams: HParams | None = None, warm: tuple[Any, ObsNorm] | None = None) -> RunnerState:
        """Agent ``key``'s runner state before its first update. With a teacher, PPO starts
        from ``warm`` (``warm_params(key, hparams)``, computed by the caller) or, without it,
        from the clone computed here."""
        cfg = self.config
        hparams = self.default_hparams() if hparams is None else hparams
        agent_key = key
        k_net, k_env, key = jax.random.split(key, 3)
        params = self.spec.init_params(k_net)
        obs_norm = ObsNorm.initial(self.spec.obs_size)
        if cfg.teacher is not None:
            params, obs_norm = warm if warm is not None else self.warm_params(agent_key, hparams)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(jax.random.split(k_env, cfg.num_envs), self.env_params)
        mask = jax.vmap(self.env.action_mask, in_axes=(0, None))(env_state, self.env_params)
        carry = self.spec.initial_carry(cfg.num_envs) if self.spec.recurrent else jnp.zeros((cfg.num_envs, 1), jnp.float32)
        return RunnerState(params=params, opt_state=self.optimizer.init(params), obs_norm=obs_norm,
                           env_state=env_state, obs=obs, mask=mask, carry=carry, reset=jnp.ones((cfg.num_envs,), bool),
                           ep_return=jnp.zeros((cfg.num_envs,), jnp.float32), key=key,
                           update=jnp.zeros((), jnp.int32), hparams=hparams)

    def _rollout(self, rs: RunnerState) -> tuple[RunnerState, Transition, Array, Array, Array]:
        cfg, env, ep = self.config, self.env, self.env_params

        def step(rs: RunnerState, _):
            key, k_act, k_env = jax.random.split(rs.key, 3)
            obs_norm = rs.obs_norm.update(rs.obs) if cfg.normalize_obs else rs.obs_norm
            x = normalize(obs_norm if cfg.normalize_obs else None, rs.obs)
            carry, logits, value = policy_forward(self.spec, rs.params, None, rs.carry, x, rs.reset)
            ml = masked_logits(logits, rs.mask)
            action = jax.random.categorical(k_act, ml).astype(jnp.int32)
            logp = jnp.take_along_axis(jax.nn.log_softmax(ml), action[:, None], -1)[:, 0]
            obs, env_state, reward, term, trunc, info = batch_step(env, jax.random.split(k_env, cfg.num_envs),
                                                                    rs.env_state, action, ep)
            done = term | trunc
            ret = rs.ep_return + reward
            if cfg.shaping > 0:  # potential-based (Ng et al. 1999): phi = 0 once an episode ends
                phi, phi_next = jax.vmap(self.potential)(rs.env_state), jax.vmap(self.potential)(env_state)
                train_reward = reward + rs.hparams.gamma * jnp.where(done, 0.0, phi_next) - phi
            else:
                train_reward = reward
            tr = Transition(obs=x, mask=rs.mask, reset=rs.reset, action=action, logp=logp, value=value,
                            reward=train_reward, done=done)
            stats = (jnp.sum(jnp.where(done, ret, 0.0)), jnp.sum(done.astype(jnp.float32)),
                     jnp.mean((~info["valid_action"]).astype(jnp.float32)))
            rs = rs._replace(obs_norm=obs_norm, env_state=env_state, obs=obs, mask=info["action_mask"], carry=carry,
                             reset=done, ep_return=jnp.where(done, 0.0, ret), key=key)
            return rs, (tr, stats)

        carry0 = rs.carry
        rs, (traj, (ret_sum, n_eps, invalid)) = jax.lax.scan(step, rs, None, length=cfg.num_steps)
        x_last = normalize(rs.obs_norm if cfg.normalize_obs else None, rs.obs)
        _, _, last_value = policy_forward(self.spec, rs.params, None, rs.carry, x_last, rs.reset)
        return rs, traj, last_value, carry0, jnp.stack([ret_sum.sum(), n_eps.sum(), invalid.mean()])

    @staticmethod
    def _gae(traj: Transition, last_value: Array, gamma: Array, lam: Array) -> tuple[Array, Array]:
        def f(carry, t: Transition):
            gae, next_value = carry
            nonterminal = 1.0 - t.done.astype(jnp.float32)
            delta = t.reward + gamma * next_value * nonterminal - t.value
            gae = delta + gamma * lam * nonterminal * gae
            return (gae, t.value), gae

        _, adv = jax.lax.scan(f, (jnp.zeros_like(last_value), last_value), traj, reverse=True)
        return adv, adv + traj.value

    def _loss(self, params, batch, hp: HParams):
        traj, adv, targets, carry0 = batch
        if self.spec.recurrent:
            _, logits, value = self.net.apply(params, carry0, traj.obs, traj.reset)
        else:
            logits, value = self.net.apply(params, traj.obs)
        ml = masked_logits(logits, traj.mask)
        logp = jnp.take_along_axis(jax.nn.log_softmax(ml), traj.action[..., None], -1)[..., 0]
        v_clipped = traj.value + jnp.clip(value - traj.value, -hp.clip, hp.clip)
        value_loss = 0.5 * jnp.mean(jnp.maximum((value - targets) ** 2, (v_clipped - targets) ** 2))
        log_ratio = logp - traj.logp
        ratio = jnp.exp(log_ratio)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - hp.clip, 1.0 + hp.clip) * adv))
        entropy = jnp.mean(masked_entropy(logits, traj.mask))
        total = pg_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy
        approx_kl = jnp.mean((ratio - 1.0) - log_ratio)
        clip_frac = jnp.mean((jnp.abs(ratio - 1.0) > hp.clip).astype(jnp.float32))
        return total, jnp.stack([pg_loss, value_loss, entropy, approx_kl, clip_frac])

    def _minibatches(self, key: Array, traj: Transition, adv: Array, targets: Array, carry0: Array):
        """Shuffle and split: MLP over every (step, env) pair; GRU over envs, keeping sequences."""
        cfg = self.config
        m = cfg.minibatches
        if self.spec.recurrent:
            perm = jax.random.permutation(key, cfg.num_envs)
            data = (traj, adv, targets)
            data = jax.tree.map(lambda x: jnp.take(x, perm, axis=1), data)
            # [T, E, ...] -> [M, T, E/M, ...]
            data = jax.tree.map(lambda x: jnp.swapaxes(x.reshape((x.shape[0], m, -1) + x.shape[2:]), 0, 1), data)
            c0 = jnp.take(carry0, perm, axis=0).reshape((m, -1) + carry0.shape[1:])
            return (*data, c0)
        n = cfg.batch_size
        perm = jax.random.permutation(key, n)
        flat = jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), (traj, adv, targets))
        data = jax.tree.map(lambda x: jnp.take(x, perm, axis=0).reshape((m, -1) + x.shape[1:]), flat)
        return (*data, jnp.zeros((m, 1), jnp.float32))

    def update(self, rs: RunnerState) -> tuple[RunnerState, UpdateMetrics]:
        """One PPO update (rollout + epochs of minibatch steps)."""
        cfg = self.config
        hp = rs.hparams
        rs, traj, last_value, carry0, ep_stats = self._rollout(rs)
        adv, targets = self._gae(traj, last_value, hp.gamma, hp.gae_lambda)
        frac = 1.0 - rs.update.astype(jnp.float32) / cfg.num_updates if cfg.anneal_lr else 1.0
        lr = hp.lr * frac
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)

        def minibatch_step(carry, batch):
            params, opt_state = carry
            (_, aux), grads = grad_fn(params, batch, hp)
            g_norm = optax.tree.norm(grads)
            scale = jnp.minimum(1.0, hp.max_grad_norm / (g_norm + 1e-6))
            grads = jax.tree.map(lambda g: g * scale, grads)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
            return (params, opt_state), aux

        def epoch(carry, key):
            params, opt_state = carry
            batches = self._minibatches(key, traj, adv, targets, carry0)
            return jax.lax.scan(minibatch_step, (params, opt_state), batches)

        key, k_epochs = jax.random.split(rs.key)
        (params, opt_state), aux = jax.lax.scan(epoch, (rs.params, rs.opt_state), jax.random.split(k_epochs, cfg.epochs))
        aux = aux.reshape(-1, aux.shape[-1]).mean(0)
        metrics = UpdateMetrics(episode_return_sum=ep_stats[0], episodes=ep_stats[1], reward_mean=traj.reward.mean(),
                                policy_loss=aux[0], value_loss=aux[1], entropy=aux[2], approx_kl=aux[3], clip_frac=aux[4],
                                lr=jnp.asarray(lr, jnp.float32), invalid_actions=ep_stats[2])
        rs = rs._replace(params=params, opt_state=opt_state, key=key, update=rs.update + 1)
        return rs, metrics

    def run_updates(self, rs: RunnerState, n: int) -> tuple[RunnerState, UpdateMetrics]:
        """``n`` (static) updates in one ``lax.scan``; metrics have a leading axis n."""
        return jax.lax.scan(lambda s, _: self.update(s), rs, None, length=n)

    def train(self, key: Array, hparams: HParams | None = None) -> tuple[RunnerState, UpdateMetrics]:
        """The whole run, pure: ``config.num_updates`` updates from ``init(key, hparams)``."""
        return self.run_updates(self.init(key, hparams), self.config.num_updates)

    # ---- evaluation (the experiment runner's rollout, inside the trace) ---------------------
    def evaluate(self, params: Any, obs_norm: ObsNorm, keys: Array, deterministic: bool = True):
        """:class:`pedagogym.policies.rollout.EpisodeResult` of the current policy on one
        learner per key (same episode code as ``pedagogym run``)."""
        from pedagogym.agents.policy import TrainedPolicy
        from pedagogym.policies.rollout import _episode

        policy = TrainedPolicy(self.spec, params, obs_norm if self.config.normalize_obs else None,
                               deterministic=deterministic, tag="<training>")
        horizon = self.built.config.horizon
        return jax.vmap(lambda k: _episode(self.env, policy, horizon, self.env_params, k))(keys)


def make_train(config: TrainConfig, built=None):
    """PureJaxRL's entry point: a pure ``train(key, hparams=None) -> (RunnerState, UpdateMetrics)``
    (jit it; vmap it over keys and :class:`HParams` to train many agents in one call)."""
    return PPOTrainer(config, built).train


# ---- many agents at once --------------------------------------------------------------------
def _vmap_or_single(fn, n_agents: int, mode: str | None = None):
    """Many agents in one compiled call: ``vmap`` over agents, or (``mode="map"``) ``lax.map``,
    a loop over agents inside the same jit. With one agent, run it unbatched (``batch_step``'s
    batch-level ``lax.cond`` stays a real branch instead of a select) and add the axis back.

    ``mode`` None: ``PEDAGOGYM_AGENT_AXIS`` (vmap|map), else vmap on accelerators and map on
    CPU. On CPU, XLA (jaxlib 0.10) can deadlock -- every thread idle, the result never ready --
    running a vmapped policy network inside the episode loop for 3+ agents on the fractions
    unit; a CPU has few cores to share between agents anyway, so the loop costs little."""
    if n_agents > 1:
        mode = mode or os.environ.get("PEDAGOGYM_AGENT_AXIS") or ("map" if jax.default_backend() == "cpu" else "vmap")
        if mode == "vmap":
            return jax.vmap(fn)
        if mode != "map":
            raise PedagogymError(f"PEDAGOGYM_AGENT_AXIS: expected 'vmap' or 'map', got {mode!r}")
        return lambda *args: jax.lax.map(lambda a: fn(*a), args)

    def single(*args):
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return single


class AgentBatch:
    """Jitted functions over every agent of a config (leading axis N = seeds x sweep).

    With several visible devices (``devices``, default all) the agent axis is split over them
    (:func:`pedagogym.sharding.split_over_devices`: N padded to a multiple of the device
    count, each device runs the one-device program on its block of agents), so each agent's
    training does not depend on the device count."""

    def __init__(self, trainer: PPOTrainer, devices=None):
        from pedagogym.sharding import split_over_devices

        self.trainer = trainer
        self.n_agents = trainer.config.n_agents
        self.devices = tuple(jax.devices() if devices is None else devices)
        n_dev = len(self.devices)
        per_device = -(-self.n_agents // n_dev)  # agents in each device's block

        def over_agents(fn, n_args: int):
            return split_over_devices(_vmap_or_single(fn, per_device), (True,) * n_args, "agents",
                                      self.devices if devices is not None or n_dev > 1 else None)

        self._over_agents = over_agents
        self.init = over_agents(lambda key, hparams: trainer.init(key, hparams), 2)
        self._init_warm = over_agents(trainer.init, 3)
        self._warm_one = jax.jit(trainer.warm_params)
        self._chunks: dict[int, Any] = {}
        eval_one = lambda params, norm, keys: trainer.evaluate(params, norm, keys)  # noqa: E731
        self._eval = over_agents(eval_one, 3)

    def initial_state(self) -> RunnerState:
        """Every agent's state before its first update. The behaviour clones of a teacher are
        fitted one agent at a time by one compiled single-agent function, outside the agent
        axis: the clone's thousands of Adam steps amplify the last-bit differences between
        programs compiled for different agent counts (measured: the loss curves part at step
        4), so without this an agent trained beside others would not be the agent its seed
        trains alone."""
        keys, hparams = self.trainer.agent_keys(), self.trainer.agent_hparams()
        if self.trainer.config.teacher is None:
            return self.init(keys, hparams)
        warm = [self._warm_one(keys[k], jax.tree.map(lambda a: a[k], hparams)) for k in range(self.n_agents)]
        return self._init_warm(keys, hparams, jax.tree.map(lambda *a: jnp.stack(a), *warm))

    def run(self, rs: RunnerState, n_updates: int) -> tuple[RunnerState, UpdateMetrics]:
        if n_updates not in self._chunks:
            fn = lambda s: self.trainer.run_updates(s, n_updates)  # noqa: E731
            self._chunks[n_updates] = self._over_agents(fn, 1)
        return self._chunks[n_updates](rs)

    def evaluate(self, rs: RunnerState, n_learners: int, seed: int):
        """EpisodeResult with axes [N, n_learners]; every agent meets the same learners."""
        from pedagogym.policies.rollout import learner_keys

        keys = learner_keys(jax.random.PRNGKey(seed), n_learners)
        keys = jnp.broadcast_to(keys, (self.n_agents,) + keys.shape)
        return self._eval(rs.params, rs.obs_norm, keys)


def state_to_numpy(rs: RunnerState) -> RunnerState:
    return jax.tree.map(np.asarray, rs)
