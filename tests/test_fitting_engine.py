"""The fitting engine's closed-form tracers (``engine.CountTracer``) give the predictions of
the sequential scan through the model's own ``p_correct`` and ``learn``.

IRT with growth, PFA, HLR and EFC keep a state that, under a full gate, is a function of how
many earlier responses of the (learner, skill) sequence were right and wrong and when the
last one was; ``engine.trace`` computes it directly instead of scanning. Each closed form
is checked here against the scan on a log with multi-skill items, several sequences per
lane, traits at several quadrature nodes and random parameters."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pedagogym.fitting import engine, from_frame
from pedagogym.fitting.fit import fitter_for


def _log(seed: int = 0):
    rng = np.random.default_rng(seed)
    items = {"i0": "a", "i1": "a", "i2": "b", "i3": "c", "i4": "a;b", "i5": "b;c", "i6": "c"}
    rows = []
    for learner in range(12):
        t = 1_700_000_000 + rng.integers(0, 10_000)
        for _ in range(rng.integers(3, 25)):
            item = rng.choice(list(items))
            t += int(rng.choice([20, 90, 3_600, 86_400 * 2]))
            rows.append((f"u{learner}", item, items[item], int(rng.random() < 0.6), t))
    df = pd.DataFrame(rows, columns=["learner_id", "item_id", "skill_id", "correct", "timestamp"])
    return from_frame(df, salt="t")


@pytest.mark.parametrize("name", ["irt1pl", "irt2pl", "pfa", "hlr", "efc"])
def test_closed_form_state_matches_the_scan(name):
    fitter = fitter_for(name)
    assert issubclass(fitter.tracer, engine.CountTracer)
    log = _log()
    curr = log.curriculum().arrays()
    model, spec = fitter.make_model({}), fitter.spec({})
    primary = np.asarray([int(np.flatnonzero(r)[0]) for r in log.q_matrix], np.int32)
    seen = np.ones(log.n_items, bool)
    make = lambda tracer: engine.Problem(model=model, tracer=tracer(model), spec=spec,  # noqa: E731
                                         base=model.default_params(curr), curr=curr,
                                         item_primary_skill=primary, item_seen=seen)
    scan, closed = make(engine.ModelTracer), make(fitter.tracer)
    rng = np.random.default_rng(1)
    theta = jax.tree.map(lambda a: a + jnp.asarray(0.3 * rng.standard_normal(np.shape(a)), jnp.float32),
                         scan.initial_theta())
    pack = engine.pack_learners(log, np.zeros(log.n_learners, np.int32))
    assert pack.multi_pos.shape[0] > 0 and int(jnp.sum(pack.start)) > pack.item.shape[1]  # multi-skill rows; lanes shared
    traits = ("prior", "speed", "memory")
    z, _ = engine.quadrature(len(traits), 2)
    mu, sd = jnp.asarray([[0.2, -0.3, 0.4]]), jnp.asarray([[0.5, 0.4, 0.6]])
    lp_scan, p_scan = engine.trace(scan, *scan.params(theta), traits, mu, sd, jnp.asarray(z), pack)
    lp_closed, p_closed = engine.trace(closed, *closed.params(theta), traits, mu, sd, jnp.asarray(z), pack)
    assert p_scan.shape == (log.n_interactions, z.shape[0])
    np.testing.assert_allclose(np.asarray(p_closed), np.asarray(p_scan), rtol=2e-5, atol=1e-6)
    # log(1 - p) for p within float32's reach of 1 amplifies p's last-bit differences: compared elsewhere
    inner = np.minimum(np.asarray(p_scan), 1.0 - np.asarray(p_scan)) > 1e-3
    np.testing.assert_allclose(np.asarray(lp_closed)[inner], np.asarray(lp_scan)[inner], rtol=2e-5, atol=1e-5)


def test_sequence_history_restarts_at_each_sequence():
    T = 5
    pack = engine.Pack(*([None] * len(engine.Pack._fields)))._replace(
        correct=jnp.asarray([[1, 0], [1, 1], [0, 0], [1, 1], [0, 1]], jnp.float32),
        start=jnp.asarray([[True, True], [False, False], [False, True], [True, False], [False, False]]),
        t=jnp.arange(T * 2, dtype=jnp.float32).reshape(T, 2))
    right, wrong, last = engine.sequence_history(pack)
    np.testing.assert_array_equal(right[:, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(wrong[:, 0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(right[:, 1], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(wrong[:, 1], [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(last[:, 0], [0, 0, 2, 0, 6])
