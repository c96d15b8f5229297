"""Hand-written policies as ONNX graphs, where their scores are a pure function of the
observation vector and the action mask.

Exportable (``EXPORTERS``):

- ``designer``: the designer's order; the step count is recovered from the ``progress``
  feature (``round(progress * horizon)``).
- ``mastery``: mastery threshold on the knowledge-tracer belief; attempts per item are
  recovered from ``item_attempts`` (``round(exp(x) - 1)``, exact for counts < 10^5).
- ``greedy_gain``: greedy on the expected belief gain (observer params and Q-matrix are
  constants of the graph).

Not exportable, and why (``NOT_EXPORTABLE``): policies with per-learner memory that the
observation does not carry, randomness, or privileged inputs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pedagogym.envs.config import BuiltEnv
from pedagogym.export.graph import GraphBuilder

NOT_EXPORTABLE = {
    "random": "random by design (a uniformly random valid item)",
    "round_robin": "breaks ties with random noise",
    "leitner": "keeps per-learner memory (boxes, due dates) that the observation vector does not carry",
    "sm2": "keeps per-learner memory (easiness, intervals, due dates) that the observation vector does not carry",
    "fsrs_scheduler": "keeps per-learner memory (stability, difficulty, due dates) that the observation does not carry",
    "zpdes": "keeps per-learner bandit memory and samples at random",
    "greedy_oracle": "privileged: reads the simulated learner's latent state, which no platform has",
    "upper_bound": "privileged: plans on the simulated learner's latent state, which no platform has",
    "belief_planner": "its lookahead (top-k candidates, response branches) is not built as a graph yet",
    "memorize": "privileged: its review intensity reads the simulated learner's true recall, which no platform has",
    "threshold": "privileged: reads the simulated learner's true recall probabilities, which no platform has",
    "cat_max_info": "its EAP ability posterior (a quadrature over per-item response counts) is not built as a graph yet",
    "cat_kl": "its EAP ability posterior (a quadrature over per-item response counts) is not built as a graph yet",
    "cat_randomesque": "samples at random among the most informative items (exposure control)",
}


@dataclass(frozen=True)
class GraphScorer:
    """A score graph with a description (the hand-written counterpart of ``MLPSpec``)."""

    build: Callable[[GraphBuilder, str, str], str]
    info: dict[str, Any] = field(default_factory=dict)

    def build_scores(self, g: GraphBuilder, obs: str, mask: str) -> str:
        return self.build(g, obs, mask)

    def describe(self) -> dict[str, Any]:
        return dict(self.info)


def _np(x) -> np.ndarray:
    return np.asarray(x)


def _column(g: GraphBuilder, obs: str, index: int) -> str:
    """obs[:, index:index+1] -> float32[N, 1]."""
    return g.op("Slice", [obs, g.const("start", [index], np.int64), g.const("end", [index + 1], np.int64),
                          g.const("axes", [1], np.int64)])


def _block(g: GraphBuilder, obs: str, start: int, size: int) -> str:
    return g.op("Slice", [obs, g.const("start", [start], np.int64), g.const("end", [start + size], np.int64),
                          g.const("axes", [1], np.int64)])


def _f(g: GraphBuilder, x: str) -> str:
    return g.op("Cast", [x], to=1)  # FLOAT


def designer(policy, built: BuiltEnv) -> GraphScorer:
    from pedagogym.policies.common import designer_rank

    curr = built.params.curriculum
    n = curr.n_items
    pos_of_item = _np(designer_rank(curr)).astype(np.float32)  # position of each item in the order
    progress = built.feature_names.index("progress")
    horizon, repeats = float(np.float32(built.params.horizon)), float(policy.repeats)

    def build(g: GraphBuilder, obs: str, mask: str) -> str:
        step = g.op("Round", [g.op("Mul", [_column(g, obs, progress), g.const("horizon", horizon)])])
        pos = g.op("Mod", [g.op("Floor", [g.op("Div", [step, g.const("repeats", repeats)])]), g.const("n", float(n))], fmod=1)
        ahead = g.op("Add", [g.op("Sub", [g.const("item_pos", pos_of_item[None, :]), pos]), g.const("n", float(n))])
        rank = g.op("Mod", [ahead, g.const("n", float(n))], fmod=1)
        return g.op("Neg", [rank])

    return GraphScorer(build, {"type": "handwritten", "policy": "designer", "repeats": policy.repeats,
                               "inputs_used": ["progress"]})


def mastery(policy, built: BuiltEnv) -> GraphScorer:
    from pedagogym.policies.common import designer_rank, skill_rank

    curr = built.params.curriculum
    n_s, n_i = curr.n_skills, curr.n_items
    names = built.feature_names
    b0, a0 = names.index(f"belief[{built.curriculum.skill_ids[0]}]"), names.index(f"item_attempts[{built.curriculum.item_ids[0]}]")
    q = (_np(curr.q_matrix) > 0).astype(np.float32)  # [I, S]
    prereq = (_np(curr.prereq) > 0).astype(np.float32)  # [S, P]
    thr = np.float32(policy.threshold)
    tie = (-_np(designer_rank(curr)).astype(np.float32)) / np.float32(n_i + 1.0)
    ranks = _np(skill_rank(curr)).astype(np.float32)

    def build(g: GraphBuilder, obs: str, mask: str) -> str:
        belief = _block(g, obs, b0, n_s)
        attempts = g.op("Round", [g.op("Sub", [g.op("Exp", [_block(g, obs, a0, n_i)]), g.const("one", 1.0)])])
        mastered = g.op("GreaterOrEqual", [belief, g.const("thr", thr)])
        not_m = g.op("Not", [mastered])
        # prerequisites all mastered: no prerequisite p of s is unmastered
        viol = g.op("MatMul", [_f(g, not_m), g.const("prereq_T", prereq.T)])
        prereq_ok = g.op("Equal", [viol, g.const("zero", 0.0)])
        has_valid = g.op("Greater", [g.op("MatMul", [_f(g, mask), g.const("q", q)]), g.const("zero", 0.0)])
        candidate = g.op("And", [g.op("And", [not_m, prereq_ok]), has_valid])
        big = float(n_s + 1)
        first = g.op("ArgMin", [g.op("Where", [candidate, g.const("skill_rank", ranks[None, :]), g.const("big", big)])],
                     axis=1, keepdims=1, select_last_index=0)
        weakest = g.op("ArgMin", [g.op("Where", [has_valid, belief, g.const("two", 2.0)])], axis=1, keepdims=1,
                       select_last_index=0)
        any_c = g.op("ReduceMax", [_f(g, candidate)], axes=[1], keepdims=1)
        target = g.op("Where", [g.op("Greater", [any_c, g.const("zero", 0.0)]), first, weakest])  # int64[N, 1]
        on_target = g.op("Squeeze", [g.op("Gather", [g.const("q_T", q.T), target], axis=0), g.const("ax1", [1], np.int64)])
        below = _f(g, g.op("Less", [belief, g.const("thr", thr)]))
        unmastered = _f(g, g.op("Greater", [g.op("MatMul", [below, g.const("q_T", q.T)]), g.const("zero", 0.0)]))
        top = g.op("ReduceMax", [attempts], axes=[1], keepdims=1)
        least = g.op("Div", [g.op("Neg", [attempts]), g.op("Add", [top, g.const("one", 1.0)])])
        tie_t = g.op("Div", [g.const("tie", tie[None, :]), g.op("Add", [top, g.const("two", 2.0)])])
        s = g.op("Add", [g.op("Mul", [on_target, g.const("c100", 100.0)]), g.op("Mul", [unmastered, g.const("c10", 10.0)])])
        return g.op("Add", [g.op("Add", [s, least]), tie_t])

    return GraphScorer(build, {"type": "handwritten", "policy": "mastery", "threshold": float(thr),
                               "inputs_used": ["belief[*]", "item_attempts[*]", "action_mask"]})


def _lexicographic(g: GraphBuilder, mask: str, keys: list[str], tol: float = 1e-6) -> str:
    """``pedagogym.policies.common.lexicographic``: 1e6 for the lexicographic best valid item
    (largest keys[0], then within ``tol`` the largest keys[1], ...), plus keys[0]."""
    cand = mask
    for k in keys:
        best = g.op("ReduceMax", [g.op("Where", [cand, k, g.const("neg_inf", -np.inf)])], axes=[1], keepdims=1)
        close = g.op("GreaterOrEqual", [k, g.op("Sub", [best, g.const("tol", tol)])])
        cand = g.op("And", [cand, close])
    return g.op("Add", [g.op("Where", [cand, g.const("c1e6", 1e6), g.const("zero", 0.0)]), keys[0]])


def greedy_gain(policy, built: BuiltEnv) -> GraphScorer:
    """``expected_belief_gain`` (per-skill BKT prediction, posterior mix, transition, summed
    over the item's skills), ordered lexicographically by (gain, designer order)."""
    import jax

    from pedagogym.policies.common import designer_rank, observed_kind

    curr, ob = built.params.curriculum, built.params.observer
    n_s, n_i = curr.n_skills, curr.n_items
    b0 = built.feature_names.index(f"belief[{built.curriculum.skill_ids[0]}]")
    w = _np(curr.q_matrix) > 0
    observed = _np(jax.vmap(lambda i: observed_kind(curr, i))(np.arange(n_i)))
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    g_, s_, l_, fo = f32(ob.p_guess), f32(ob.p_slip), f32(ob.p_learn), f32(ob.p_forget)
    one32 = np.float32(1.0)
    neg_rank = -_np(designer_rank(curr)).astype(np.float32)

    def build(g: GraphBuilder, obs: str, mask: str) -> str:
        one = g.const("one", 1.0)
        b = _block(g, obs, b0, n_s)  # [N, S]
        # bkt.predict: b (1 - slip) + (1 - b) guess
        p_c = g.op("Add", [g.op("Mul", [b, g.const("one_minus_slip", (one32 - s_)[None])]),
                           g.op("Mul", [g.op("Sub", [one, b]), g.const("guess", g_[None])])])

        def posterior(lk: np.ndarray, lu: np.ndarray) -> str:
            num = g.op("Mul", [b, g.const("lk", lk[None])])
            return g.op("Div", [num, g.op("Add", [num, g.op("Mul", [g.op("Sub", [one, b]), g.const("lu", lu[None])])])])

        post_c = posterior(one32 - s_, g_)
        post_w = posterior(s_, one32 - g_)
        mix = g.op("Add", [g.op("Mul", [p_c, post_c]), g.op("Mul", [g.op("Sub", [one, p_c]), post_w])])  # [N, S]
        ax = g.const("ax1", [1], np.int64)
        cond = g.op("Where", [g.const("observed", observed[None, :, None], bool), g.op("Unsqueeze", [mix, ax]),
                              g.op("Unsqueeze", [b, ax])])  # [N, I, S]
        after = g.op("Add", [g.op("Mul", [cond, g.const("keep", (one32 - fo)[None, None])]),
                             g.op("Mul", [g.op("Sub", [one, cond]), g.const("learn", l_[None, None])])])
        diff = g.op("Where", [g.const("w", w[None], bool), g.op("Sub", [after, g.op("Unsqueeze", [b, ax])]),
                              g.const("zero", 0.0)])
        gain = g.op("ReduceSum", [diff, g.const("ax2", [2], np.int64)], keepdims=0)  # [N, I]
        rank_key = g.op("Expand", [g.const("neg_rank", neg_rank[None]), g.op("Shape", [gain])])
        return _lexicographic(g, mask, [gain, rank_key])

    return GraphScorer(build, {"type": "handwritten", "policy": "greedy_gain",
                               "inputs_used": ["belief[*]", "action_mask"]})


EXPORTERS: dict[str, Callable[[Any, BuiltEnv], GraphScorer]] = {
    "designer": designer,
    "mastery": mastery,
    "greedy_gain": greedy_gain,
}
