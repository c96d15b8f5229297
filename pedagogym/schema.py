"""The observation schema, defined once (JAX-free, standard library only): the feature groups of
the ``platform`` observation vector, their order and sizes, and the scales and time unit its
features use. Read by the env featurizer (:class:`pedagogym.envs.observations.PlatformFeatures`),
early warning (:mod:`pedagogym.warning.model`), the bundle manifest (``observation.groups``,
``rt_scale_s``, ``seconds_per_day``: :mod:`pedagogym.export.manifest`) and, through the manifest,
the deployed runtime and the Node client, which import nothing from pedagogym and check a
bundle's schema against the one they implement when they load it. A layout change is one edit
here (and the featurizers' formulas, when a group is new).
"""
from __future__ import annotations

from collections.abc import Sequence

SECONDS_PER_DAY = 86400.0  # the simulator's clock counts days; logs and response times count seconds
RT_SCALE_S = 600.0  # response times are reported as log1p(seconds) / log1p(RT_SCALE_S)

SKILL, ITEM, SCALAR = "skill", "item", "scalar"  # a group has one value per skill, per item, or one
FEATURE_GROUPS: tuple[tuple[str, str], ...] = (
    ("belief", SKILL), ("skill_attempts", SKILL), ("skill_accuracy", SKILL),
    ("item_attempts", ITEM), ("item_accuracy", ITEM), ("item_recency", ITEM),
    ("last_correct", SCALAR), ("last_rt", SCALAR), ("progress", SCALAR), ("session", SCALAR),
    ("session_time", SCALAR),
)
VECTOR_GROUPS = tuple(g for g, per in FEATURE_GROUPS if per != SCALAR)
SCALAR_GROUPS = tuple(g for g, per in FEATURE_GROUPS if per == SCALAR)


def group_size(per: str, n_skills: int, n_items: int) -> int:
    return {SKILL: n_skills, ITEM: n_items, SCALAR: 1}[per]


def n_features(n_skills: int, n_items: int) -> int:
    return sum(group_size(per, n_skills, n_items) for _, per in FEATURE_GROUPS)


def feature_names(skill_ids: Sequence[str], item_ids: Sequence[str]) -> list[str]:
    """``group[id]`` for per-skill and per-item groups, ``group`` for scalars, in order."""
    names: list[str] = []
    for group, per in FEATURE_GROUPS:
        ids = {SKILL: skill_ids, ITEM: item_ids}.get(per)
        names += [group] if ids is None else [f"{group}[{i}]" for i in ids]
    return names


def manifest_section() -> dict:
    """What a bundle manifest carries of the schema (``observation`` section)."""
    return {"groups": [{"name": g, "per": per} for g, per in FEATURE_GROUPS], "rt_scale_s": RT_SCALE_S,
            "seconds_per_day": SECONDS_PER_DAY}
