"""Gymnasium citizenship: ids on ``import pedagogym``, the single env is the vector env at
N = 1 (bit for bit), and the vector env's same-step auto-reset reproduces
``gymnasium.vector.SyncVectorEnv(autoreset_mode=SAME_STEP)`` over single envs, info keys
and ``_key`` masks included, for every registered id."""
from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import pytest

import pedagogym
from pedagogym.envs import ENV_IDS, make
from pedagogym.envs.gym_env import Packer, PedagogyGymEnv, PedagogyVectorEnv

ALL_IDS = ENV_IDS.names()


def test_import_pedagogym_registers_every_id_without_jax():
    code = ("import sys, gymnasium as gym, pedagogym\n"
            "assert 'jax' not in sys.modules, 'import pedagogym imported jax'\n"
            "gym.register_envs(pedagogym)\n"
            "ids = sorted(k for k in gym.registry if k.startswith('pedagogym/'))\n"
            "env = gym.make('pedagogym/PrereqBKT-v0')\n"
            "obs, info = env.reset(seed=0)\n"
            "print(len(ids), obs.shape[0], env.action_space.n)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    n_ids, d, n_items = map(int, out.stdout.split())
    built = make("pedagogym/PrereqBKT-v0")
    assert n_ids == len(ALL_IDS) and d == built.env.obs_size(built.params) and n_items == built.curriculum.n_items


def test_register_envs_and_make_vec_find_the_ids():
    gym.register_envs(pedagogym)
    assert set(ALL_IDS) <= set(gym.registry)
    spec = gym.spec("pedagogym/PrereqBKT-v0")
    assert spec.entry_point == "pedagogym.envs.gym_env:make_gym_env"
    assert spec.vector_entry_point == "pedagogym.envs.gym_env:make_vector_env"


def _run_pair(single: PedagogyGymEnv, vec: PedagogyVectorEnv, seed: int, actions: list[int]):
    """Step both with the same actions; the single env resets (unseeded) when its episode ends,
    the vector env auto-resets."""
    o1, i1 = single.reset(seed=seed)
    ov, iv = vec.reset(seed=seed)
    np.testing.assert_array_equal(o1, ov[0])
    np.testing.assert_array_equal(i1["action_mask"], iv["action_mask"][0])
    ends = 0
    for a in actions:
        o1, r1, t1, u1, i1 = single.step(a)
        ov, rv, tv, uv, iv = vec.step(np.array([a]))
        assert (r1, t1, u1) == (rv[0], tv[0], uv[0])
        if t1 or u1:
            ends += 1
            np.testing.assert_array_equal(o1, iv["final_obs"][0])
            for k, v in i1.items():
                np.testing.assert_array_equal(v, iv["final_info"][k][0])
            o1, i1 = single.reset()
            np.testing.assert_array_equal(i1["action_mask"], iv["action_mask"][0])
        else:
            for k, v in i1.items():
                np.testing.assert_array_equal(v, iv[k][0])
        np.testing.assert_array_equal(o1, ov[0])  # bit for bit
    return ends


def test_single_env_is_the_vector_env_at_batch_one():
    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=6)
    rng = np.random.default_rng(0)
    actions = rng.integers(built.curriculum.n_items, size=20).tolist()
    ends = _run_pair(PedagogyGymEnv(built), PedagogyVectorEnv(built, 1), seed=5, actions=actions)
    assert ends >= 3  # horizon 6, 20 steps: the auto-reset path ran


def _assert_same(a, b, where="infos"):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), (where, sorted(a), sorted(b))
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert b.dtype == object and a.shape == b.shape, where
        for x, y in zip(a, b):
            assert (x is None) == (y is None), where
            if x is not None:
                _assert_same(x, y, where)
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a.dtype, b.dtype, a.shape, b.shape)
        if a.dtype.kind == "f":  # N learners in one call vs one at a time: XLA may vectorise exp/log
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=where)  # differently (1 ulp)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_vector_env_matches_gymnasium_sync_vector_env(env_id):
    """Same seeds, same actions: the same observations, rewards, flags and infos (final_obs,
    final_info, every ``_key`` mask; dtypes and shapes too) as Gymnasium's own vector env in
    same-step mode. Integers, flags and masks exactly; floats to 1e-6 (batch 3 vs batch 1:
    the bit-for-bit identity is the batch-1 test above)."""
    n, horizon = 3, 4
    ours = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", horizon=horizon)
    assert isinstance(ours, PedagogyVectorEnv)
    assert ours.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    ref = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, horizon=horizon) for _ in range(n)],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    assert ours.single_observation_space == ref.single_observation_space
    assert ours.action_space == ref.action_space
    _assert_same(ours.reset(seed=11), ref.reset(seed=11), "reset")
    rng = np.random.default_rng(1)
    ends = 0
    for t in range(2 * horizon + 1):
        actions = rng.integers(ours.single_action_space.n, size=n)
        a, b = ours.step(actions), ref.step(actions)
        _assert_same(a, b, f"step {t}")
        ends += int(np.sum(a[2] | a[3]))
    assert ends >= n  # every learner's episode ended at least once: the auto-reset path ran
    # partial resets (Gymnasium 1.x ``options["reset_mask"]``)
    mask = np.array([True, False, True])
    _assert_same(ours.reset(options={"reset_mask": mask}), ref.reset(options={"reset_mask": mask.copy()}), "reset_mask")
    ours.close()
    ref.close()


def test_vector_env_render_and_bad_input():
    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=3)
    vec = PedagogyVectorEnv(built, 2, render_mode="ansi")
    assert vec.render_mode == "ansi" and "ansi" in vec.metadata["render_modes"]
    vec.reset(seed=0)
    frames = vec.render()
    assert isinstance(frames, tuple) and len(frames) == 2 and frames[0].startswith("step 0 ")
    vec.step(np.array([0, 1]))
    assert vec.render()[1].startswith("step 1 ")
    with pytest.raises(ValueError, match="actions"):
        vec.step(np.array([0, built.curriculum.n_items]))
    with pytest.raises(ValueError, match="reset_mask"):
        vec.reset(options={"reset_mask": np.zeros(2, bool)})
    with pytest.raises(ValueError, match="render_mode"):
        PedagogyVectorEnv(built, 2, render_mode="human")
    single = PedagogyGymEnv(built, render_mode="ansi")
    with pytest.raises(RuntimeError, match="reset"):
        single.step(0)
    single.reset(seed=0)
    with pytest.raises(ValueError, match="not in"):
        single.step(-1)


def test_packer_round_trips_every_dtype_bit_for_bit():
    import jax

    tree = {"b": jnp.array([True, False, True]), "i8": jnp.array([-3, 7], jnp.int8), "f16": jnp.array([1.5], jnp.float16),
            "u32": jnp.array([2**32 - 1], jnp.uint32), "i32": jnp.array(-5, jnp.int32),
            "f32": jnp.array([np.nan, -0.0, 1e-45], jnp.float32)}
    p = Packer(jax.eval_shape(lambda t: t, tree))
    row = jax.jit(p.pack)(tree)
    assert row.dtype == jnp.uint32 and row.shape == (p.size,) == (3 + 2 + 1 + 1 + 1 + 3,)
    back = jax.jit(p.unpack)(row)
    host = np.array(row)
    for k, v in tree.items():
        for got in (np.asarray(back[k]), p.get(host, k)):
            assert got.dtype == v.dtype and got.shape == v.shape
            np.testing.assert_array_equal(got.reshape(-1).view(np.uint8), np.asarray(v).reshape(-1).view(np.uint8))


def test_many_envs_share_one_compiled_kernel():
    built = make("pedagogym/PrereqBKT-v0", curriculum="tiny")
    a, b = PedagogyGymEnv(built), PedagogyGymEnv(make("pedagogym/PrereqBKT-v0", curriculum="tiny", horizon=9))
    assert a._kernel is b._kernel  # same env and params layout: compiled once (make_vec_env's copies)
