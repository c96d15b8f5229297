"""Curricula: skills, prerequisite DAG, items (Q-matrix), designer order; TOML loading.

``CURRICULA`` holds the built-in curricula (every ``builtin/*.toml``, registered under its
``name``, loaded on first use); :func:`resolve_curriculum` turns a registered name or a path
to a ``.toml`` file into a validated :class:`Curriculum`.
"""
from __future__ import annotations

import os
from pathlib import Path

from pedagogym.curriculum.loader import CurriculumError, from_dict, load_curriculum
from pedagogym.curriculum.spec import Curriculum, CurriculumArrays, Item, ItemKind, Skill
from pedagogym.registry import Registry

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"

CURRICULA: Registry[Curriculum] = Registry("curriculum")


def _load_builtins() -> None:
    for path in sorted(BUILTIN_DIR.glob("*.toml")):
        curriculum = load_curriculum(path)
        CURRICULA.register(curriculum.name, curriculum)


CURRICULA.add_loader(_load_builtins)


def resolve_curriculum(name_or_path: str | os.PathLike[str] | Curriculum) -> Curriculum:
    """A registered curriculum name (``pedagogym list --kind curriculum``) or a path to a TOML file.

    A :class:`Curriculum` passes through unchanged. Anything else raises :class:`CurriculumError`.
    """
    if isinstance(name_or_path, Curriculum):
        return name_or_path
    if isinstance(name_or_path, str) and name_or_path in CURRICULA:
        return CURRICULA.get(name_or_path)
    path = Path(name_or_path)
    if path.suffix.lower() == ".toml" or path.exists():
        return load_curriculum(path)
    raise CurriculumError(str(name_or_path), "", f"unknown curriculum: neither a registered name (known: "
                          f"{', '.join(CURRICULA.names()) or '(none)'}) nor a path to a .toml file")


__all__ = ["CURRICULA", "Curriculum", "CurriculumArrays", "CurriculumError", "Item", "ItemKind", "Skill",
           "from_dict", "load_curriculum", "resolve_curriculum"]
