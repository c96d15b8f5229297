"""Policies with weights hash and compare on a fingerprint of their weights, never on a label: two
different in-memory agents must not share a jit cache entry (issue 19, item 5)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pedagogym.agents.networks import NetworkSpec
from pedagogym.agents.policy import TorchLSTMPolicy, TorchMLPPolicy, TrainedPolicy

SPEC = NetworkSpec(obs_size=4, n_actions=3, hidden=(5,))


def _params(seed: int):
    return jax.tree.map(np.asarray, SPEC.init_params(jax.random.PRNGKey(seed)))


def _static_logits(policy, obs):
    """A jitted call with the policy as a static argument, as ``evaluate`` takes it."""
    return jax.jit(lambda o, p: p.logits(jnp.zeros((1,), jnp.float32), o)[0], static_argnums=1)(obs, policy)


def test_trained_policies_with_different_weights_differ():
    a, b = TrainedPolicy(SPEC, _params(0), None), TrainedPolicy(SPEC, _params(1), None)
    assert a.tag == b.tag == "<memory>"
    assert a != b and hash(a) != hash(b)
    same = TrainedPolicy(SPEC, jax.tree.map(np.copy, _params(0)), None, tag="another label")
    assert a == same and hash(a) == hash(same)
    obs = jnp.linspace(0.0, 1.0, 4)
    # the second call must use b's weights, not a cached trace of a's
    assert not np.allclose(_static_logits(a, obs), _static_logits(b, obs))


def test_torch_policies_hash_on_weights():
    rng = np.random.default_rng(0)
    w = lambda: (rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32))  # noqa: E731
    a, b = TorchMLPPolicy(("linear",), (w(),)), TorchMLPPolicy(("linear",), (w(),))
    assert a != b and hash(a) != hash(b)
    assert a == TorchMLPPolicy(("linear",), a.weights, tag="run#0")
    lstm = lambda: (rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((2, 8)).astype(np.float32),  # noqa: E731
                    np.zeros(8, np.float32))
    c, d = TorchLSTMPolicy(lstm(), ("linear",), (w(),)), TorchLSTMPolicy(lstm(), ("linear",), (w(),))
    assert c != d and hash(c) != hash(d)
