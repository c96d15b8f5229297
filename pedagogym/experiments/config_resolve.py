"""Name lookups shared by the runner and the report."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def subgroup_names(population: str) -> tuple[str, ...]:
    from pedagogym.envs.config import resolve_population

    return resolve_population(population).subgroup_names
