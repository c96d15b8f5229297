"""Gymnasium adapters over compiled steps: a single-learner ``gymnasium.Env`` and a
``gymnasium.vector.VectorEnv`` of N learners.

There is one implementation of the dynamics (:class:`pedagogym.envs.core.PedagogyEnv`,
``reset`` and ``step``); the adapters only run it, through a *kernel*: ahead-of-time compiled
``reset`` and ``step`` calls that keep each learner's PRNG key and ``EnvState`` on the device
in ``uint32`` buffers and return every result (observation, reward, flags, info, action mask)
in one ``uint32`` buffer that the host copies once. The single env *is* the vector env at
N = 1: both run the same one-learner kernel (:class:`LearnerKernel`), the same calls on the
same inputs, so they agree bit for bit.

- N = 1 (:class:`LearnerKernel`), the latency path: one ``uint32[1, R]`` *row* is the whole
  carry and the whole output (key, state, and the step's observation, reward, flags and info);
  ``step`` runs ``env.step`` only and ``reset`` runs ``env.reset`` only. When an episode ends,
  the next learner is drawn by ``reset`` (the same key chain, below): the vector env calls it in
  the finishing step (same-step auto-reset), the single env when the learner is next needed
  (``reset()``, ``learner_state()``, or a ``step()`` without a ``reset()``).
- N > 1 (:class:`Kernel`), the throughput path: ``step`` steps every learner and auto-resets
  those whose episode ended in the same call (:func:`pedagogym.envs.wrappers.reset_finished`);
  the carry is donated to the next call.

Key chain (per learner, the same in both adapters, so that
``gymnasium.vector.SyncVectorEnv`` over single envs reproduces the vector env):
``reset(seed=s)``: ``key = PRNGKey(s)`` then ``key, k = split(key)``, learner ``reset(k)``;
``step``: ``key, k = split(key)``, ``step(k)``; when the episode ends in that step,
``key, k = split(key)`` and the next learner is ``reset(k)``. The single env's ``reset()``
without a seed returns that next learner.

Why the one-learner kernel looks the way it does. XLA:CPU runs a program as a graph of small
compiled kernels ("thunks") and hands ready ones to a thread pool whenever more than 8 are
ready at once; a one-learner step is a few dozen thunks of about a microsecond, so thread
hand-offs, not arithmetic, were most of its cost (~190 thunks before: the auto-reset branch
inside the step, per-leaf packing). So: no reset branch in the step; rows packed with
concatenates of at most 8 leaves, which XLA fuses with the leaves' ops (:meth:`Packer.pack`),
and unpacked with per-leaf slices, which XLA fuses into their readers; the kernel compiled
with XLA's memory-optimised scheduler, whose buffer reuse chains the thunks so that they run
one after the other on one thread (:data:`_LATENCY_OPTIONS`); and run on a CPU client of our
own that executes a call on the calling thread, where JAX's hands it to a worker thread and
waits (:func:`_latency_device`). Results are bit for bit those of the previous kernel (checked
on every registered env; XLA:CPU may contract a multiply-add differently when an op lands in
another fused kernel, so a packing that fuses arithmetic differently is not a free choice).
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
from jax import tree_util

from pedagogym.envs.config import BuiltEnv, EnvConfig, build
from pedagogym.envs.wrappers import reset_finished

_U32 = np.dtype(np.uint32)
#: compile options of the one-learner kernel: scheduling only (which thunk runs when, which
#: buffers are reused), never what a thunk computes
_LATENCY_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


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


def _travel(dtype: np.dtype) -> np.dtype:
    """The dtype a leaf travels as inside the row, before its group's ``uint32`` bitcast: bool
    as ``uint32`` 0/1 words (group bool), 64-bit leaves as ``uint32`` pairs, 8/16-bit ones as
    their 32-bit kind."""
    if dtype == np.bool_:
        return dtype
    if dtype.itemsize == 8:
        return _U32
    return _wide(dtype)


def _path_name(path) -> str:
    """``"info.action_mask"``, ``"state.history.t"``: a leaf's key path, dot-joined."""
    parts = []
    for k in path:
        if isinstance(k, tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, tree_util.FlattenedIndexKey):
            parts.append(str(k.key))
        else:  # pragma: no cover - a key type of a future JAX
            parts.append(str(k).strip(".[]'\""))
    return ".".join(parts)


class Packer:
    """Lays the leaves of a pytree (one learner's, leading batch axes apart) side by side in
    one ``uint32`` row, bit for bit: 32-bit leaves are bitcast, 64-bit ones take two words,
    bools and 8/16-bit leaves one word per element. Fields are named by key path
    (``"info.action_mask"``, ``"state.history.t"``).

    The row is grouped by the dtype a leaf travels as (float32, int32, uint32, bool; each
    group in leaf order), so that a compiled step packs a pytree with a few bitcasts of
    concatenates rather than one bitcast per leaf (:meth:`pack`): on the CPU every op left
    unfused is a separately dispatched kernel."""

    _GROUPS = (np.dtype(np.float32), np.dtype(np.int32), _U32, np.dtype(np.bool_))

    def __init__(self, shapes: Any):
        with_path, self.treedef = tree_util.tree_flatten_with_path(shapes)
        infos = []
        for _, leaf in with_path:
            shape, dtype = tuple(leaf.shape), np.dtype(leaf.dtype)
            width = int(np.prod(shape, dtype=np.int64)) * (2 if dtype.itemsize == 8 else 1)
            infos.append((shape, dtype, width))
        # groups: (travel dtype, start, end, [(leaf index, offset within the group, width)])
        self.groups: list[tuple[np.dtype, int, int, list[tuple[int, int, int]]]] = []
        starts: dict[int, int] = {}
        off = 0
        for g in self._GROUPS:
            members, goff = [], 0
            for i, (_, dtype, width) in enumerate(infos):
                if _travel(dtype) == g:
                    members.append((i, goff, width))
                    starts[i] = off + goff
                    goff += width
            if members:
                self.groups.append((g, off, off + goff, members))
            off += goff
        self.size = off
        self.specs: list[tuple[tuple[int, ...], np.dtype, int, int]] = [
            (shape, dtype, starts[i], starts[i] + width) for i, (shape, dtype, width) in enumerate(infos)]
        self.fields = dict(zip((_path_name(path) for path, _ in with_path), self.specs))

    def pack(self, tree: Any) -> jax.Array:
        """uint32[size] (traced; vmap it for a batch): per group, concatenates of at most 8
        leaves bitcast to ``uint32`` (XLA:CPU fuses a concatenate of at most 8 operands with the
        ops computing them, but gives every operand of a wider one a kernel of its own), then
        one concatenate of those (a copy)."""
        xs = jax.tree.leaves(tree)
        chunks = []
        for g, _, _, members in self.groups:
            segs = []
            for i, _, _ in members:
                dtype = self.specs[i][1]
                x = jnp.asarray(xs[i], dtype)
                if dtype.itemsize == 8:
                    x = lax.bitcast_convert_type(x, jnp.uint32)
                elif g == np.bool_:
                    x = x.astype(jnp.uint32)
                elif dtype != g:
                    x = x.astype(g)
                segs.append(x.reshape(-1))
            for j in range(0, len(segs), 8):
                c = jnp.concatenate(segs[j:j + 8]) if len(segs[j:j + 8]) > 1 else segs[j]
                chunks.append(c if c.dtype == _U32 else lax.bitcast_convert_type(c, jnp.uint32))
        if not chunks:
            return jnp.zeros((0,), jnp.uint32)
        return jnp.concatenate(chunks, -1) if len(chunks) > 1 else chunks[0]

    def unpack(self, row: jax.Array) -> Any:
        """The pytree from ``uint32[size]`` (traced): each leaf a slice and a bitcast, which XLA
        fuses into the ops that read the leaf."""
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
        """Field ``name`` from a host ``uint32[..., size]`` buffer (a view into it where the
        dtype allows)."""
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
        if dtype.itemsize < 4:
            return buf[a:a + 1].view(_wide(dtype)).astype(dtype)[0]
        return buf[a:a + 1].view(dtype)[0]

    def get_prefixed(self, buf: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
        """Every field ``prefix.NAME`` as ``{NAME: array}``."""
        return {name[len(prefix) + 1:]: self.get(buf, name) for name in self.fields if name.startswith(prefix + ".")}

    def get_named(self, buf: np.ndarray, names: dict[str, str]) -> dict[str, np.ndarray]:
        """``{key: field names[key]}``."""
        return {key: self.get(buf, name) for key, name in names.items()}


def _flat(tree: dict[str, Any]) -> dict[str, Any]:
    """``{"info": {"mask": x}}`` -> ``{"info.mask": x}`` (one level of nesting)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


#: what ``render`` shows of a learner: its ``EnvState.history`` fields of these names
_VIEW_FIELDS = ("step", "session", "t", "last_item", "belief")


def _view(state) -> dict[str, Any]:
    """What ``render`` shows of a learner (one learner's ``EnvState``)."""
    h = state.history
    return {name: getattr(h, name) for name in _VIEW_FIELDS}


# ---- the compiled kernels ------------------------------------------------------------------
@contextlib.contextmanager
def _unrolled_threefry():
    """While lowering a kernel, lower Threefry on the CPU unrolled, as on GPU/TPU: JAX's CPU
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


def _compile(lowered, options: dict[str, Any]):
    """``lowered.compile`` with XLA ``options``; without them where this XLA lacks one (they
    only schedule, so the results are the same either way)."""
    if options:
        try:
            return lowered.compile(compiler_options=options)
        except Exception:  # noqa: BLE001 - "No such compile option" from an older/newer XLA
            pass
    return lowered.compile()


def _split(keys):
    """``keys, k = split(key)`` per learner (``keys`` uint32[n, *K])."""
    split = jax.vmap(jax.random.split)(keys)
    return split[:, 0], split[:, 1]


def _params_packer(params) -> tuple[Packer, Any]:
    packer = Packer(jax.eval_shape(lambda p: p, params))
    shapes = packer.treedef.unflatten([jax.ShapeDtypeStruct(s, d) for s, d, _, _ in packer.specs])
    return packer, shapes


_LATENCY_DEVICE: list[Any] = []  # [device or None], made on first use


def _latency_device():
    """The device the one-learner kernels run on: the one device of a CPU client of our own
    that runs each call inline on the calling thread (``asynchronous=False``), or ``None``
    (JAX's default device) where the default backend is not the CPU or this jaxlib cannot
    make such a client.

    JAX's CPU client runs a call on a worker thread and the caller waits for it (async
    dispatch): two thread hand-offs per call, which for a one-learner step cost about as much
    as the step itself (more on a busy machine). Same compiler, same compiled program, same
    bits; only where it runs."""
    if not _LATENCY_DEVICE:
        device = None
        try:
            if jax.default_backend() == "cpu":
                from jax._src.lib import xla_client

                device = xla_client.make_cpu_client(asynchronous=False).devices()[0]
        except Exception:  # noqa: BLE001 - an older/newer jaxlib: JAX's default device
            device = None
        _LATENCY_DEVICE.append(device)
    return _LATENCY_DEVICE[0]


class LearnerKernel:
    """The compiled ``reset`` and ``step`` of one learner (the single env, and the vector env
    at N = 1), shared by every adapter with the same env and params layout (:func:`kernel`).

    One ``uint32[1, R]`` row (:attr:`row`) is the carry and the output: fields ``key``,
    ``state.*`` (the learner's ``EnvState``), ``obs``, ``reward``, ``terminated``,
    ``truncated`` and ``info.*`` (``info.action_mask`` is the learner's action mask now).

    ``step(row, params uint32[P], action int32[1]) -> row``: ``key, k = split(key)``,
    ``env.step(k)``; no auto-reset (a finished episode's learner stays in the row until
    ``reset``).

    ``reset(row, key uint32[1, *K], use_key bool[1], params) -> row``: the key chain restarts
    at ``key`` where ``use_key``, else continues; ``key, k = split(key)``, ``env.reset(k)``;
    ``obs`` and ``info.action_mask`` are the new learner's, ``reward``, the flags and the
    other ``info`` fields zero.

    Neither call donates the row: an output aliasing the buffer it is computed from costs
    XLA a copy kernel; a fresh buffer of a few KiB costs next to nothing.
    """

    n = 1

    def __init__(self, env, params):
        self.env = env
        key = jax.random.PRNGKey(0)
        self.key_shape = tuple(key.shape)
        self.params, p_shapes = _params_packer(params)
        _, state_s = jax.eval_shape(env.reset, key, p_shapes)
        action_s = jax.ShapeDtypeStruct((), jnp.int32)
        self._row_shapes = jax.eval_shape(self._one_step, key, key, state_s, action_s, p_shapes)
        self.row = Packer(self._row_shapes)
        self.view_names = {name: f"state.history.{name}" for name in _VIEW_FIELDS}
        self.device = _latency_device()  # None: JAX's default device
        sharding = None if self.device is None else jax.sharding.SingleDeviceSharding(self.device)

        def spec(shape, dtype):
            return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

        row, pbuf = spec((1, self.row.size), jnp.uint32), spec((self.params.size,), jnp.uint32)
        with _unrolled_threefry():
            step = jax.jit(self._step).lower(row, pbuf, spec((1,), jnp.int32))
            reset = jax.jit(self._reset).lower(row, spec((1, *key.shape), key.dtype), spec((1,), jnp.bool_), pbuf)
        self.step, self.reset = _compile(step, _LATENCY_OPTIONS), _compile(reset, _LATENCY_OPTIONS)
        self._seed_keys = jax.jit(jax.vmap(jax.random.PRNGKey)).lower(spec((1,), jnp.uint32)).compile()
        self._pack_params = jax.jit(self.params.pack)
        self._state_of = jax.jit(lambda r: self.row.unpack(r[0])["state"])  # on JAX's default device
        self.no_key = self.keys_for([0])  # for reset(use_key=False)
        self.use_key = {flag: self.put(np.array([flag])) for flag in (False, True)}

    def put(self, x) -> jax.Array:
        """``x`` on the kernel's device."""
        return jax.device_put(x, self.device)

    def pack_params(self, params) -> jax.Array:
        """uint32[P] on the kernel's device."""
        return self.put(self._pack_params(params))

    def learner_state(self, row: jax.Array):
        """The row's ``EnvState``, on JAX's default device (where the caller's own arrays are)."""
        return self._state_of(np.asarray(row))

    def _one_step(self, key, k_step, state, action, params):
        obs, new, reward, term, trunc, info = self.env.step(k_step, state, action, params)
        return {"key": key, "state": new, "obs": obs, "reward": reward, "terminated": term, "truncated": trunc,
                "info": dict(info)}

    def _pack(self, res):
        # the learner's row, packed unbatched (rank-1 pieces)
        return self.row.pack(jax.tree.map(lambda x: x[0], res))[None]

    def _step(self, row, pbuf, actions):
        params = self.params.unpack(pbuf)
        cur = jax.vmap(self.row.unpack)(row)
        keys, k_step = _split(cur["key"])
        res = jax.vmap(self._one_step, in_axes=(0, 0, 0, 0, None))(keys, k_step, cur["state"], actions, params)
        return self._pack(res)

    def _reset(self, row, seed_keys, use_key, pbuf):
        env, params = self.env, self.params.unpack(pbuf)
        cur = jax.vmap(self.row.unpack)(row)
        keys = jnp.where(use_key.reshape((-1,) + (1,) * len(self.key_shape)), seed_keys, cur["key"])
        keys, k = _split(keys)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(k, params)
        res = jax.tree.map(lambda s: jnp.zeros((1, *s.shape), s.dtype), self._row_shapes)
        res["key"], res["state"] = keys, state
        res["obs"] = jax.vmap(env.observation, in_axes=(0, None))(state, params)
        res["info"]["action_mask"] = jax.vmap(env.action_mask, in_axes=(0, None))(state, params)
        return self._pack(res)

    def new_carry(self) -> jax.Array:
        return self.put(np.zeros((1, self.row.size), np.uint32))

    def keys_for(self, seeds: list[int]) -> jax.Array:
        """uint32[1, *K] ``PRNGKey(seed)`` (the seed taken modulo 2**32)."""
        return self._seed_keys(self.put(np.asarray([int(s) % 2**32 for s in seeds], np.uint32)))

    # the vector env's calls (same-step auto-reset)
    def host_reset(self, carry, keys, use_key, reset, pbuf):
        """``reset`` (at N = 1 ``reset`` is all True): (carry, obs, mask, view source)."""
        row = self.reset(carry, keys, self.put(np.asarray(use_key)), pbuf)
        buf, r = np.array(row), self.row
        return row, r.get(buf, "obs"), r.get(buf, "info.action_mask"), (buf, r, self.view_names)

    def host_step(self, carry, pbuf, actions):
        """``step``, then ``reset`` (key chain) where the episode ended: (carry, arrays, view
        source) as :meth:`Kernel.host_step`."""
        row = self.step(carry, pbuf, self.put(np.asarray(actions, np.int32)))
        buf, r = np.array(row), self.row
        arrays = {"obs": r.get(buf, "obs"), "final_obs": r.get(buf, "obs")}
        arrays.update({name: r.get(buf, name) for name in ("reward", "terminated", "truncated")})
        arrays["mask"], arrays["info"] = r.get(buf, "info.action_mask"), r.get_prefixed(buf, "info")
        view = (buf, r, self.view_names)
        if arrays["terminated"][0] or arrays["truncated"][0]:
            row = self.reset(row, self.no_key, self.use_key[False], pbuf)
            buf = np.array(row)
            arrays["obs"], arrays["mask"] = r.get(buf, "obs"), r.get(buf, "info.action_mask")
            view = (buf, r, self.view_names)
        return row, arrays, view


class Kernel:
    """The compiled ``reset`` and ``step`` of ``n`` > 1 learners of one env, shared by every
    adapter with the same env, params layout and ``n`` (:func:`kernel`).

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
        self.params, p_shapes = _params_packer(params)
        obs_s, state_s = jax.eval_shape(env.reset, key, p_shapes)
        self.state = Packer((jax.ShapeDtypeStruct(key.shape, key.dtype), state_s))
        step_s = jax.eval_shape(self._one_step, key, state_s, jax.ShapeDtypeStruct((), jnp.int32), p_shapes)
        self.out = Packer(step_s)
        self.reset_out = Packer(jax.eval_shape(self._reset_view, state_s, p_shapes))
        self.view_names = {name: f"view.{name}" for name in _VIEW_FIELDS}
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

    def _step(self, carry, pbuf, actions):
        env, params = self.env, self.params.unpack(pbuf)
        keys, state = jax.vmap(self.state.unpack)(carry)
        keys, k_step = _split(keys)
        obs, state, reward, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            k_step, state, actions, params)
        done = term | trunc
        keys_after, k_reset = _split(keys)
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
        keys, k = _split(keys)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(k, params)
        new = jax.vmap(self.state.pack)((keys, state))
        out = jax.vmap(lambda s: self.reset_out.pack(self._reset_view(s, params)))(state)
        return jnp.where(reset[:, None], new, carry), out

    def new_carry(self) -> jax.Array:
        return jnp.zeros((self.n, self.state.size), jnp.uint32)

    def keys_for(self, seeds: list[int]) -> jax.Array:
        """uint32[n, *K] ``PRNGKey(seed)`` per learner (seeds taken modulo 2**32)."""
        return self.seed_keys(np.asarray([int(s) % 2**32 for s in seeds], np.uint32))

    # the vector env's calls
    def host_reset(self, carry, keys, use_key, reset, pbuf):
        """``reset``: (carry, obs float32[n, D], mask bool[n, I], view source)."""
        carry, out = self.reset(carry, keys, use_key, reset, pbuf)
        buf, r = np.array(out), self.reset_out
        return carry, r.get(buf, "obs"), r.get(buf, "mask"), (buf, r, self.view_names)

    def host_step(self, carry, pbuf, actions):
        """``step``: (carry, arrays, view source); ``arrays``: ``obs`` (the next learner's where
        the episode ended), ``final_obs``, ``reward``, ``terminated``, ``truncated``, ``mask``,
        ``info`` (a dict); the view source is ``(buffer, layout, names)`` for ``render``."""
        carry, out = self.step(carry, pbuf, actions)
        buf, o = np.array(out), self.out  # the one device -> host copy
        arrays = {name: o.get(buf, name) for name in ("obs", "final_obs", "reward", "terminated", "truncated", "mask")}
        arrays["info"] = o.get_prefixed(buf, "info")
        return carry, arrays, (buf, o, self.view_names)


_KERNELS: dict[Any, Any] = {}


def kernel(env, params, n: int) -> LearnerKernel | Kernel:
    """The cached kernel for ``env`` (a hashable ``PedagogyEnv``), the structure of ``params``
    and ``n`` learners (:class:`LearnerKernel` for one, :class:`Kernel` for more): many
    adapters (``make_vec_env``'s copies, ``SyncVectorEnv``'s single envs) compile once."""
    leaves, treedef = jax.tree.flatten(params)
    sig = (env, n, treedef, tuple((np.shape(x), np.dtype(getattr(x, "dtype", type(x)))) for x in leaves))
    k = _KERNELS.get(sig)
    if k is None:
        k = _KERNELS[sig] = LearnerKernel(env, params) if n == 1 else Kernel(env, params, n)
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


def _reader(layout: Packer, name: str):
    """``buf -> field name`` of a 1-D host row, as :meth:`Packer.scalar` (``()`` fields) or
    :meth:`Packer.get` give it, with the offsets looked up once."""
    shape, dtype, a, b = layout.fields[name]
    if shape == () and dtype == np.bool_:
        return lambda buf: bool(buf[a])
    if shape == () and dtype.itemsize == 4:
        return lambda buf: buf[a:b].view(dtype)[0]
    if dtype == np.bool_:
        return lambda buf: (buf[a:b] != 0).reshape(shape)
    if dtype.itemsize == 4:
        return lambda buf: buf[a:b].view(dtype).reshape(shape)
    if shape == ():
        return lambda buf: layout.scalar(buf, name)
    return lambda buf: layout.get(buf, name)


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
        self._kernel = k = kernel(self.env, self.params, 1)
        self._pbuf = k.pack_params(self.params)
        self._actions: dict[int, jax.Array] = {}  # int32[1] on the device, one per action (no upload per step)
        self._call = k.step  # the compiled step; its C++ entry point once known (see step)
        # where the step's results lie in the row
        r = k.row
        self._read_obs, self._read_reward = _reader(r, "obs"), _reader(r, "reward")
        self._flags_at = r.fields["terminated"][2], r.fields["truncated"][2]
        self._info_readers = [(n[len("info."):], _reader(r, n)) for n in r.fields if n.startswith("info.")]
        self._row: jax.Array | None = None  # the learner (key, state) and the last results, uint32[1, R] on the device
        self._ended = False  # the last step ended an episode and the next learner is not drawn yet
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the next learner: obs, mask, row
        self._mask: np.ndarray | None = None
        self._shown: np.ndarray | None = None  # the row that render shows

    def _draw_next(self) -> None:
        """The next learner from the key chain (the vector env's auto-reset learner)."""
        k = self._kernel
        self._row = k.reset(self._row, k.no_key, k.use_key[False], self._pbuf)
        buf = np.array(self._row)[0]
        self._pending = (k.row.get(buf, "obs"), k.row.get(buf, "info.action_mask"), buf)
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        k = self._kernel
        if seed is None and self._row is not None:
            if self._pending is None:
                self._draw_next()
            obs, self._mask, buf = self._pending
        else:
            if seed is None:  # no key chain yet
                seed = int(self.np_random.integers(2**31))
            row = self._row if self._row is not None else k.new_carry()
            self._row = k.reset(row, k.keys_for([seed]), k.use_key[True], self._pbuf)
            buf = np.array(self._row)[0]
            obs, self._mask = k.row.get(buf, "obs"), k.row.get(buf, "info.action_mask")
        self._shown, self._pending, self._ended = buf, None, False
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
        if self._row is None:
            raise RuntimeError("call reset() before step()")
        a = self._action(action)
        act = self._actions.get(a)
        if act is None:
            act = self._actions[a] = self._kernel.put(np.array([a], np.int32))
        if self._ended:  # stepped on without reset(): the next learner (as the vector env's auto-reset)
            self._draw_next()
        self._pending = None
        self._row = row = self._call(self._row, self._pbuf, act)
        if self._call is self._kernel.step:  # after the first call: JAX's C++ fast path, one Python frame less
            self._call = getattr(self._call, "_call", None) or self._call
        buf = np.array(row)[0]  # the one device -> host copy (writable: torch warns on read-only arrays)
        t, u = self._flags_at
        term, trunc = bool(buf[t]), bool(buf[u])
        info = {name: read(buf) for name, read in self._info_readers}
        self._mask, self._shown, self._ended = info["action_mask"], buf, term or trunc
        return self._read_obs(buf), float(self._read_reward(buf)), term, trunc, info

    def learner_state(self):
        """The current learner's ``EnvState`` (unpacked from the compiled kernel's row), or
        ``None`` before the first ``reset``: what a pedagogym policy acting through this env
        (:class:`pedagogym.policies.gym.GymPolicyRunner`) reads. After a step that ended an
        episode it is the next learner's (the one ``reset()`` without a seed returns)."""
        if self._row is None:
            return None
        if self._ended:
            self._draw_next()
        return self._kernel.learner_state(self._row)

    def action_masks(self) -> np.ndarray:
        """bool[I] valid items now (sb3-contrib MaskablePPO calls this)."""
        if self._mask is None:
            return np.ones(self._n_actions, bool)
        return self._mask.copy()

    def render(self):
        if self.render_mode != "ansi" or self._shown is None:
            return None
        k = self._kernel
        return _render_line(self.built, k.row.get_named(self._shown, k.view_names))


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
        self._view_src: tuple[np.ndarray, Packer, dict[str, str]] | None = None  # read on render only

    def _current_view(self) -> dict[str, np.ndarray] | None:
        if self._view_src is not None:
            buf, layout, names = self._view_src
            self._view, self._view_src = layout.get_named(buf, names), None
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
        self._carry, obs, mask, (buf, layout, names) = self._kernel.host_reset(
            self._carry, keys, use, reset_mask, self._pbuf)
        self._obs[reset_mask] = obs[reset_mask]
        self._mask[reset_mask] = mask[reset_mask]
        view, current = layout.get_named(buf, names), self._current_view()
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
        self._carry, arrays, self._view_src = self._kernel.host_step(self._carry, self._pbuf, actions.astype(np.int32))
        self._obs, self._mask = arrays["obs"], arrays["mask"]
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
