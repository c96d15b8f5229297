"""Curricula: skills, prerequisite DAG, items (Q-matrix), designer order; TOML loading."""
from pedagogym.curriculum.spec import Curriculum, CurriculumArrays, Item, ItemKind, Skill

__all__ = ["Curriculum", "CurriculumArrays", "Item", "ItemKind", "Skill"]
