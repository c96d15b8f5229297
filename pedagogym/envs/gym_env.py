"""Gymnasium adapters over one compiled step: a single-learner ``gymnasium.Env`` and a
``gymnasium.vector.VectorEnv`` of N learners.

Both are the same kernel (:class:`Kernel`): N learners (N = 1 for the single env) stepped
and, where an episode ended, auto-reset in one ahead-of-time compiled call. The kernel keeps
each learner's PRNG key and ``EnvState`` on the device as one ``uint32[N, C]`` buffer that is
donated to the next call, reads the params from one ``uint32[P]`` buffer, and returns every
result (observation, reward, flags, info, action mask) as one ``uint32[N, W]`` buffer that
the host copies once. There is one implementation of the dynamics
(:class:`pedagogym.envs.core.PedagogyEnv`); the single env *is* the vector env at N = 1.

Key chain (per learner, the same in both adapters, so that
``gymnasium.vector.SyncVectorEnv`` over single envs reproduces the vector env):
``reset(seed=s)``: ``key = PRNGKey(s)`` then ``key, k = split(key)``, learner ``reset(k)``;
``step``: ``key, k = split(key)``, ``step(k)``; when the episode ends in that step,
``key, k = split(key)`` and the next learner is ``reset(k)``. The single env draws that next
learner already in the finishing step; its ``reset()`` without a seed then returns it.
"""
from __future__ import annotations

import contextlib
import operator
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pedagogym.envs.config import BuiltEnv, EnvConfig, build
from pedagogym.envs.wrappers import reset_finished

_U32 = np.dtype(np.uint32)


def _spaces(built: BuiltEnv) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    d = built.env.obs_size(built.params)
    # every feature is >= 0; probabilities and fractions are <= 1, log1p counts <= log1p(horizon)
    high = np.float32(max(1.0, np.log1p(built.config.horizon)))
    obs_space = gym.spaces.Box(low=0.0, high=high, shape=(d,), dtype=np.float32)
    return obs_space, gym.spaces.Discrete(built.curriculum.n_items)


# ---- one buffer per pytree -----------------------------------------------------------------
def _wide(dtype: np.dtype) -> np.dtype:
    """The 32-bit dtype a narrow (8/16-bit) dtype travels as."""
    if dtype.kind == "f":
        return np.dtype(np.float32)
    return np.dtype(np.int32 if dtype.kind == "i" else np.uint32)


class Packer:
    """Lays the leaves of a pytree (one learner's, leading batch axes apart) side by side in
    one ``uint32`` row, bit for bit: 32-bit leaves are bitcast, 64-bit ones take two words,
    bools and 8/16-bit leaves one word per element."""

    def __init__(self, shapes: Any):
        leaves, self.treedef = jax.tree.flatten(shapes)
        self.specs: list[tuple[tuple[int, ...], np.dtype, int, int]] = []
        names = sorted(shapes) if isinstance(shapes, dict) else []  # a dict flattens in key order
        off = 0
        for leaf in leaves:
            shape, dtype = tuple(leaf.shape), np.dtype(leaf.dtype)
            width = int(np.prod(shape, dtype=np.int64)) * (2 if dtype.itemsize == 8 else 1)
            self.specs.append((shape, dtype, off, off + width))
            off += width
        self.size = off
        self.fields = dict(zip(names, self.specs))

    def pack(self, tree: Any) -> jax.Array:
        """uint32[size] (traced; vmap it for a batch)."""
        parts = []
        for x, (_, dtype, _, _) in zip(jax.tree.leaves(tree), self.specs):
            x = jnp.asarray(x, dtype)
            if dtype == np.bool_:
                x = x.astype(jnp.uint32)
            elif dtype.itemsize < 4:
                x = x.astype(_wide(dtype))
            parts.append(lax.bitcast_convert_type(x, jnp.uint32).reshape(-1))
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), jnp.uint32)

    def unpack(self, row: jax.Array) -> Any:
        """The pytree from ``uint32[size]`` (traced)."""
        leaves = []
        for shape, dtype, a, b in self.specs:
            seg = row[a:b]
            if dtype == np.bool_:
                x = seg != 0
            elif dtype.itemsize == 8:
                x = lax.bitcast_convert_type(seg.reshape(-1, 2), dtype)
            elif dtype.itemsize < 4:
                x = lax.bitcast_convert_type(seg, _wide(dtype)).astype(dtype)
            else:
                x = lax.bitcast_convert_type(seg, dtype)
            leaves.append(x.reshape(shape))
        return jax.tree.unflatten(self.treedef, leaves)

    def get(self, buf: np.ndarray, name: str) -> np.ndarray:
        """Field ``name`` of a flat-dict layout from a host ``uint32[..., size]`` buffer (a view
        into it where the dtype allows)."""
        shape, dtype, a, b = self.fields[name]
        seg = buf[..., a:b]
        if dtype == np.bool_:
            x = seg != 0
        elif dtype.itemsize == 8:
            x = np.ascontiguousarray(seg).view(dtype)
        elif dtype.itemsize < 4:
            x = seg.view(_wide(dtype)).astype(dtype)
        else:
            x = seg.view(dtype)
        return x.reshape(buf.shape[:-1] + shape)

    def scalar(self, buf: np.ndarray, name: str):
        """A ``()``-shaped field of a 1-D buffer as a Python bool or a numpy scalar."""
        _, dtype, a, _ = self.fields[name]
        if dtype == np.bool_:
            return bool(buf[a])
        return buf[a:a + 1].view(dtype)[0]

    def get_prefixed(self, buf: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
        """Every field ``prefix.NAME`` as ``{NAME: array}``."""
        return {name[len(prefix) + 1:]: self.get(buf, name) for name in self.fields if name.startswith(prefix + ".")}


def _flat(tree: dict[str, Any]) -> dict[str, Any]:
    """``{"info": {"mask": x}}`` -> ``{"info.mask": x}`` (one level of nesting)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def _view(state) -> dict[str, Any]:
    """What ``render`` shows of a learner (one learner's ``EnvState``)."""
    h = state.history
    return {"step": h.step, "session": h.session, "t": h.t, "last_item": h.last_item, "belief": h.belief}


# ---- the compiled kernel -------------------------------------------------------------------
@contextlib.contextmanager
def _unrolled_threefry():
    """While lowering the kernel, lower Threefry on the CPU unrolled, as on GPU/TPU: JAX's CPU
    rule rolls its 5 rounds into a ``while`` loop (to compile faster), and a loop of tiny
    bodies dominates a one-learner step. Same integer arithmetic, bit for bit the same keys
    and samples. Uses JAX internals; where they moved, the default lowering is kept."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        rules = mlir._platform_specific_lowerings["cpu"]
        prim = tf.threefry2x32_p
        old, fast = rules[prim], mlir._lowerings[prim]  # the generic rule: unrolled, out of line
        if not isinstance(fast, mlir.LoweringRuleEntry):
            raise TypeError(fast)
    except (ImportError, AttributeError, KeyError, TypeError):
        yield
        return
    rules[prim] = fast
    try:
        yield
    finally:
        rules[prim] = old


class Kernel:
    """The compiled ``reset`` and ``step`` of ``n`` learners of one env, shared by every adapter
    with the same env, params layout and ``n`` (:func:`kernel`).

    ``step(carry uint32[n, C], params uint32[P], actions int32[n]) -> (carry, out uint32[n, W])``
    (``carry`` donated); ``out`` unpacks (:attr:`out`) to ``obs`` (the next learner's where the
    episode ended), ``final_obs`` (the step's own observation), ``reward``, ``terminated``,
    ``truncated``, ``mask`` (the current learner's action mask), ``info`` (the step's info),
    ``view`` / ``final_view`` (for ``render``).

    ``reset(carry, keys uint32[n, *K], use_key bool[n], reset bool[n], params) -> (carry, out)``
    resets the learners where ``reset``, from ``keys`` where ``use_key`` and else from the
    learner's own key chain; ``out`` unpacks (:attr:`reset_out`) to ``obs``, ``mask``, ``view``.
    """

    def __init__(self, env, params, n: int):
        self.env, self.n = env, n
        key = jax.random.PRNGKey(0)
        self.key_shape = tuple(key.shape)
        self.params = Packer(jax.eval_shape(lambda p: p, params))
        p_shapes = self.params.treedef.unflatten(
            [jax.ShapeDtypeStruct(s, d) for s, d, _, _ in self.params.specs])
        obs_s, state_s = jax.eval_shape(env.reset, key, p_shapes)
        self.state = Packer((jax.ShapeDtypeStruct(key.shape, key.dtype), state_s))
        step_s = jax.eval_shape(self._one_step, key, state_s, jax.ShapeDtypeStruct((), jnp.int32), p_shapes)
        self.out = Packer(step_s)
        self.reset_out = Packer(jax.eval_shape(self._reset_view, state_s, p_shapes))
        carry = jax.ShapeDtypeStruct((n, self.state.size), jnp.uint32)
        pbuf = jax.ShapeDtypeStruct((self.params.size,), jnp.uint32)
        flags = jax.ShapeDtypeStruct((n,), jnp.bool_)
        keys = jax.ShapeDtypeStruct((n, *key.shape), key.dtype)
        # ahead of time: one executable each, called without retracing or dispatch checks
        with _unrolled_threefry():
            step = jax.jit(self._step, donate_argnums=0).lower(carry, pbuf, jax.ShapeDtypeStruct((n,), jnp.int32))
            reset = jax.jit(self._reset).lower(carry, keys, flags, flags, pbuf)
        self.step, self.reset = step.compile(), reset.compile()
        self.seed_keys = jax.jit(jax.vmap(jax.random.PRNGKey)).lower(
            jax.ShapeDtypeStruct((n,), jnp.uint32)).compile()
        self.pack_params = jax.jit(self.params.pack)

    # the per-learner views, for the output layouts
    def _one_step(self, key, state, action, params):
        obs, new, reward, term, trunc, info = self.env.step(key, state, action, params)
        return _flat({"obs": obs, "final_obs": obs, "reward": reward, "terminated": term, "truncated": trunc,
                      "mask": info["action_mask"], "info": info, "view": _view(new), "final_view": _view(new)})

    def _reset_view(self, state, params):
        return _flat({"obs": self.env.observation(state, params), "mask": self.env.action_mask(state, params),
                      "view": _view(state)})

    def _split(self, keys):
        split = jax.vmap(jax.random.split)(keys)
        return split[:, 0], split[:, 1]

    def _step(self, carry, pbuf, actions):
        env, params = self.env, self.params.unpack(pbuf)
        keys, state = jax.vmap(self.state.unpack)(carry)
        keys, k_step = self._split(keys)
        obs, state, reward, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            k_step, state, actions, params)
        done = term | trunc
        keys_after, k_reset = self._split(keys)
        keys = jnp.where(done.reshape((-1,) + (1,) * len(self.key_shape)), keys_after, keys)
        final_view = jax.vmap(_view)(state)
        new_obs, state, mask = reset_finished(env, done, k_reset, obs, state, info["action_mask"], params)
        out = _flat({"obs": new_obs, "final_obs": obs, "reward": reward, "terminated": term, "truncated": trunc,
                     "mask": mask, "info": info, "view": jax.vmap(_view)(state), "final_view": final_view})
        return jax.vmap(self.state.pack)((keys, state)), jax.vmap(self.out.pack)(out)

    def _reset(self, carry, seed_keys, use_key, reset, pbuf):
        env, params = self.env, self.params.unpack(pbuf)
        keys, _ = jax.vmap(self.state.unpack)(carry)
        keys = jnp.where(use_key.reshape((-1,) + (1,) * len(self.key_shape)), seed_keys, keys)
        keys, k = self._split(keys)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(k, params)
        new = jax.vmap(self.state.pack)((keys, state))
        out = jax.vmap(lambda s: self.reset_out.pack(self._reset_view(s, params)))(state)
        return jnp.where(reset[:, None], new, carry), out

    def new_carry(self) -> jax.Array:
        return jnp.zeros((self.n, self.state.size), jnp.uint32)

    def keys_for(self, seeds: list[int]) -> jax.Array:
        """uint32[n, *K] ``PRNGKey(seed)`` per learner (seeds taken modulo 2**32)."""
        return self.seed_keys(np.asarray([int(s) % 2**32 for s in seeds], np.uint32))


_KERNELS: dict[Any, Kernel] = {}


def kernel(env, params, n: int) -> Kernel:
    """The cached :class:`Kernel` for ``env`` (a hashable ``PedagogyEnv``), the structure of
    ``params`` and ``n`` learners: many adapters (``make_vec_env``'s copies) compile once."""
    leaves, treedef = jax.tree.flatten(params)
    sig = (env, n, treedef, tuple((np.shape(x), np.dtype(getattr(x, "dtype", type(x)))) for x in leaves))
    k = _KERNELS.get(sig)
    if k is None:
        k = _KERNELS[sig] = Kernel(env, params, n)
    return k


def _render_line(built: BuiltEnv, view: dict[str, Any]) -> str:
    item = int(view["last_item"])
    return (f"step {int(view['step'])} session {int(view['session'])} day {float(view['t']):.2f} "
            f"last item {built.curriculum.item_ids[item] if item >= 0 else '-'} "
            f"belief {np.round(np.asarray(view['belief'], np.float64), 2).tolist()}")


_RENDER_MODES = ["ansi"]


def _check_render_mode(render_mode: str | None) -> str | None:
    if render_mode is not None and render_mode not in _RENDER_MODES:
        raise ValueError(f"render_mode: expected one of {_RENDER_MODES} or None, got {render_mode!r}")
    return render_mode


# ---- the single env ------------------------------------------------------------------------
class PedagogyGymEnv(gym.Env):
    """One simulated learner per episode. ``reset(seed=s)`` draws a learner from the
    population with ``PRNGKey(s)``; the same seed gives the same learner and, with the same
    actions, the same trajectory. ``reset()`` without a seed draws the next learner from the
    env's key chain (the one a vector env of these would auto-reset to)."""

    metadata = {"render_modes": _RENDER_MODES, "render_fps": 4}

    def __init__(self, built: BuiltEnv, render_mode: str | None = None):
        self.built = built
        self.env, self.params = built.env, built.params
        self.observation_space, self.action_space = _spaces(built)
        self.render_mode = _check_render_mode(render_mode)
        self.feature_names = built.feature_names
        self._n_actions = int(self.action_space.n)
        self._kernel = kernel(self.env, self.params, 1)
        self._pbuf = self._kernel.pack_params(self.params)
        out = self._kernel.out
        self._info_fields = [(n[len("info."):], out.fields[n][0] == ()) for n in out.fields if n.startswith("info.")]
        self._carry = None
        self._mask: np.ndarray | None = None
        self._shown: tuple[np.ndarray, Packer, str] | None = None  # (buffer, layout, view prefix) for render
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the auto-reset learner

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and self._pending is not None:
            obs, self._mask, buf = self._pending
            self._shown = (buf, self._kernel.out, "view")
        else:
            if seed is None and self._carry is None:
                seed = int(self.np_random.integers(2**31))
            k = self._kernel
            carry = self._carry if self._carry is not None else k.new_carry()
            keys = k.keys_for([0 if seed is None else seed])
            self._carry, out = k.reset(carry, keys, np.array([seed is not None]), np.ones(1, bool), self._pbuf)
            buf = np.array(out)[0]
            obs, self._mask = k.reset_out.get(buf, "obs"), k.reset_out.get(buf, "mask")
            self._shown = (buf, k.reset_out, "view")
        self._pending = None
        return obs, {"action_mask": self._mask.copy()}

    def _action(self, action) -> int:
        try:
            a = operator.index(action)
        except TypeError:
            if not self.action_space.contains(action) and not self.action_space.contains(int(action)):
                raise ValueError(f"action {action!r} is not in {self.action_space}") from None
            return int(action)
        if not 0 <= a < self._n_actions:
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        return a

    def step(self, action):
        if self._carry is None:
            raise RuntimeError("call reset() before step()")
        a = self._action(action)
        k = self._kernel
        self._carry, out = k.step(self._carry, self._pbuf, np.array([a], np.int32))
        buf = np.array(out)[0]  # the one device -> host copy (writable: torch warns on read-only arrays)
        o = k.out
        term, trunc = o.scalar(buf, "terminated"), o.scalar(buf, "truncated")
        info = {name: o.scalar(buf, f"info.{name}") if scalar else o.get(buf, f"info.{name}")
                for name, scalar in self._info_fields}
        self._mask = info["action_mask"]
        self._shown = (buf, o, "final_view")
        self._pending = (o.get(buf, "obs"), o.get(buf, "mask"), buf) if term or trunc else None
        return o.get(buf, "final_obs"), float(o.scalar(buf, "reward")), term, trunc, info

    def learner_state(self):
        """The current learner's ``EnvState`` (unpacked from the compiled step's carry), or
        ``None`` before the first ``reset``: what a pedagogym policy acting through this env
        (:class:`pedagogym.policies.gym.GymPolicyRunner`) reads."""
        if self._carry is None:
            return None
        return self._kernel.state.unpack(jnp.asarray(self._carry)[0])[1]

    def action_masks(self) -> np.ndarray:
        """bool[I] valid items now (sb3-contrib MaskablePPO calls this)."""
        if self._mask is None:
            return np.ones(self._n_actions, bool)
        return self._mask.copy()

    def render(self):
        if self.render_mode != "ansi" or self._shown is None:
            return None
        buf, layout, prefix = self._shown
        return _render_line(self.built, layout.get_prefixed(buf, prefix))


# ---- the vector env ------------------------------------------------------------------------
def _batched_info(info: dict[str, np.ndarray], where: np.ndarray) -> dict[str, np.ndarray]:
    """``info`` as ``gymnasium.vector.VectorEnv._add_info`` batches the infos of the envs in
    ``where`` (bool[N]): each key's values there, zeros elsewhere, and its ``_key`` mask."""
    out: dict[str, np.ndarray] = {}
    for key, value in info.items():
        w = where.reshape((-1,) + (1,) * (value.ndim - 1))
        out[key] = np.where(w, value, np.zeros((), value.dtype))
        out[f"_{key}"] = where.copy()
    return out


class PedagogyVectorEnv(gym.vector.VectorEnv):
    """N learners stepped by one compiled call, with Gymnasium 1.x same-step auto-reset
    (``metadata["autoreset_mode"] == AutoresetMode.SAME_STEP``): the observation returned with
    ``terminated | truncated`` is already the next learner's; the finished episode's last
    observation is ``infos["final_obs"][i]`` and its info ``infos["final_info"]``, batched
    with ``_key`` masks exactly as ``gymnasium.vector.SyncVectorEnv(autoreset_mode=SAME_STEP)``
    over N :class:`PedagogyGymEnv` gives them (same seeds, same actions, same episodes)."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "render_modes": _RENDER_MODES,
                "render_fps": 4}

    def __init__(self, built: BuiltEnv, num_envs: int, render_mode: str | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.built, self.num_envs = built, num_envs
        self.env, self.params = built.env, built.params
        self.render_mode = _check_render_mode(render_mode)
        self.single_observation_space, self.single_action_space = _spaces(built)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._kernel = kernel(self.env, self.params, num_envs)
        self._pbuf = self._kernel.pack_params(self.params)
        self._carry = None
        self._obs = np.zeros((num_envs, *self.single_observation_space.shape), np.float32)
        self._mask = np.ones((num_envs, built.curriculum.n_items), bool)
        self._view: dict[str, np.ndarray] | None = None
        self._view_src: tuple[np.ndarray, Packer] | None = None  # read on render only

    def _current_view(self) -> dict[str, np.ndarray] | None:
        if self._view_src is not None:
            buf, layout = self._view_src
            self._view, self._view_src = layout.get_prefixed(buf, "view"), None
        return self._view

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        n = self.num_envs
        if isinstance(seed, int):
            super().reset(seed=seed)
            seeds: list[int | None] = [seed + i for i in range(n)]
        else:
            seeds = [None] * n if seed is None else list(seed)
        if len(seeds) != n:
            raise ValueError(f"reset(seed=...): expected {n} seeds, got {len(seeds)}")
        reset_mask = np.ones(n, bool)
        if options and "reset_mask" in options:
            reset_mask = np.asarray(options["reset_mask"])
            if reset_mask.shape != (n,) or reset_mask.dtype != np.bool_ or not reset_mask.any():
                raise ValueError(f"options['reset_mask']: expected a bool[{n}] array with at least one True, "
                                 f"got {options['reset_mask']!r}")
        if self._carry is None:  # no key chain yet: unseeded learners draw a seed
            seeds = [int(self.np_random.integers(2**31)) if s is None else s for s in seeds]
            self._carry = self._kernel.new_carry()
        use = np.array([s is not None for s in seeds])
        keys = self._kernel.keys_for([0 if s is None else s for s in seeds])
        self._carry, out = self._kernel.reset(self._carry, keys, use, reset_mask, self._pbuf)
        r = self._kernel.reset_out
        buf = np.array(out)
        self._obs[reset_mask] = r.get(buf, "obs")[reset_mask]
        self._mask[reset_mask] = r.get(buf, "mask")[reset_mask]
        view, current = r.get_prefixed(buf, "view"), self._current_view()
        if current is None:
            self._view = view
        else:
            for k, v in view.items():
                current[k][reset_mask] = v[reset_mask]
        return self._obs.copy(), _batched_info({"action_mask": self._mask}, reset_mask)

    def step_arrays(self, actions) -> dict[str, Any]:
        """One step, as the kernel's arrays (``obs``, ``final_obs``, ``reward``, ``terminated``,
        ``truncated``, ``mask``, ``info``): the SB3 adapter's fast path."""
        if self._carry is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer) \
                or actions.min() < 0 or actions.max() >= self.single_action_space.n:
            raise ValueError(f"actions: expected {self.num_envs} integers in [0, {self.single_action_space.n}), "
                             f"got {actions!r}")
        self._carry, out = self._kernel.step(self._carry, self._pbuf, actions.astype(np.int32))
        buf = np.array(out)  # the one device -> host copy
        o = self._kernel.out
        arrays = {name: o.get(buf, name) for name in ("obs", "final_obs", "reward", "terminated", "truncated", "mask")}
        arrays["info"] = o.get_prefixed(buf, "info")
        self._obs, self._mask, self._view_src = arrays["obs"], arrays["mask"], (buf, o)
        return arrays

    def step(self, actions):
        o = self.step_arrays(actions)
        term, trunc = o["terminated"], o["truncated"]
        done = term | trunc
        step_info = o["info"]
        infos = {}
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = o["final_obs"][i]
            infos.update(final_obs=final_obs, _final_obs=done.copy(),
                         final_info=_batched_info(step_info, done), _final_info=done.copy())
        if not done.all():
            infos.update(_batched_info({k: v for k, v in step_info.items() if k != "action_mask"}, ~done))
        infos.update(_batched_info({"action_mask": o["mask"]}, np.ones(self.num_envs, bool)))
        return o["obs"].copy(), o["reward"].astype(np.float64), term.copy(), trunc.copy(), infos

    def action_masks(self) -> np.ndarray:
        return self._mask.copy()

    def render(self) -> tuple[str, ...] | None:
        view = self._current_view()
        if self.render_mode != "ansi" or view is None:
            return None
        return tuple(_render_line(self.built, {k: v[i] for k, v in view.items()}) for i in range(self.num_envs))


def config_from_kwargs(env_id: str, defaults: EnvConfig, kwargs: dict[str, Any]) -> EnvConfig:
    return EnvConfig.from_dict(kwargs, source=f"gymnasium.make({env_id!r})", base=defaults)


def make_gym_env(env_id: str, render_mode: str | None = None, **kwargs) -> PedagogyGymEnv:
    from pedagogym.envs.registration import ENV_IDS

    return PedagogyGymEnv(build(config_from_kwargs(env_id, ENV_IDS.get(env_id), kwargs)), render_mode=render_mode)


def make_vector_env(env_id: str, num_envs: int = 1, render_mode: str | None = None, **kwargs) -> PedagogyVectorEnv:
    from pedagogym.envs.registration import ENV_IDS

    return PedagogyVectorEnv(build(config_from_kwargs(env_id, ENV_IDS.get(env_id), kwargs)), num_envs,
                             render_mode=render_mode)
