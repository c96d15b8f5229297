"""Split the leading (batch) axis of a batched function over every visible device.

    run = split_over_devices(fn, split=(False, True), axis="learners")
    out = run(params, keys)            # keys: [N, ...] split over devices; params replicated

``fn`` must act independently on each index of the split axis (a ``vmap`` over learners, a
``lax.map`` over agents). The axis is padded up to a multiple of the device count with copies
of its last entry, the padding dropped from every output; each device runs the one-device
program on its block (``jax.shard_map`` over a 1-D ``Mesh``), so each entry's result does not
depend on the device count (floats up to the last bits where XLA vectorises a reduction
differently for another block size). With one device, or when called inside a trace, it is
a plain ``jax.jit(fn)``.

On a CPU-only machine, ``XLA_FLAGS=--xla_force_host_platform_device_count=K`` (set before
JAX is imported) makes K CPU devices, to test or to measure.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def device_mesh(axis: str, devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh named ``axis`` over ``devices`` (default: every visible device)."""
    devs = tuple(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devs, dtype=object), (axis,))


def _pad(x, pad: int):
    if isinstance(x, np.ndarray):
        return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    return jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])


def split_over_devices(fn: Callable, split: Sequence[bool], axis: str,
                       devices: Sequence[Any] | None = None) -> Callable:
    """``fn(*args)`` with the leading axis of every argument marked in ``split`` (and of every
    output) split over ``devices``; the other arguments are replicated."""
    devs = tuple(jax.devices() if devices is None else devices)
    plain = jax.jit(fn)
    if len(devs) == 1:
        def one(*args):
            return plain(*jax.device_put(args, devs[0]))
        return one if devices is not None else plain
    mesh = device_mesh(axis, devs)
    specs = tuple(PartitionSpec(axis) if s else PartitionSpec() for s in split)
    # check_vma off: loop carries start replicated (zeros) and become per-entry, as intended
    sharded = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(axis), check_vma=False))

    def call(*args):
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args)):
            return plain(*args)
        n = jax.tree.leaves([a for a, s in zip(args, split) if s])[0].shape[0]
        pad = (-n) % len(devs)
        placed = []
        for a, s in zip(args, split):
            if s and pad:
                a = jax.tree.map(lambda x: _pad(x, pad), a)
            placed.append(jax.device_put(a, NamedSharding(mesh, PartitionSpec(axis) if s else PartitionSpec())))
        out = sharded(*placed)
        return jax.tree.map(lambda x: x[:n], out) if pad else out

    return call
