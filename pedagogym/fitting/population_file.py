"""The fitted population file, and how its parameters reach the simulator.

A fitted population is an ordinary population TOML (``name``, ``description``,
``[[subgroups]]``: the envs load it as they load any population), plus one table per
fitted model that the population loader ignores and :func:`apply_fitted_params` reads::

    [model.bkt]
    skills = ["fractions.add", "fractions.mul"]   # skill ids; the arrays below follow this order
    p_init = [0.21, 0.35]
    p_learn = [0.15, 0.09]
    ...
    [model.bkt.global]          # parameters that are not per skill (e.g. FSRS weights ``w``)
    [model.irt2pl.items]        # per-item parameters (IRT)
    ids = ["q1", "q2"]
    difficulty = [-0.4, 0.7]
    discrimination = [1.1, 0.8]
    [fit.bkt]                   # how the fit went (aggregates only)

Subgroup trait (mean, sd) pairs are on the scale of the fitted model's ``apply_traits``:
simulate with the same model the population was fitted for.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import Curriculum, CurriculumArrays
from pedagogym.fitting.engine import TRAIT_ORDER


class FittedParamsError(PedagogymError):
    """A fitted population file without usable parameters for the model; names the file."""


# ---- a small TOML writer (the standard library reads TOML but does not write it) -----------
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):  # TOML could say nan/inf, but no fitted file may carry one
            raise ValueError(f"refusing to write the non-finite number {f} to a TOML file")
        return repr(round(f, 6)) if abs(f) >= 1e-4 or f == 0 else f"{f:.6e}"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(data: dict, comment: str = "") -> str:
    """TOML for nested dicts of scalars/arrays; a list of dicts becomes an array of tables."""
    lines = [f"# {c}" if c else "#" for c in comment.splitlines()] if comment else []

    def table(path: list[str], d: dict, header: str | None):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and not (
            isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
        nested_only = not scalars and not any(isinstance(v, list) for v in d.values())
        if header is not None and not (nested_only and d):
            lines.append("")
            lines.append(header)
        for k, v in scalars.items():
            lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in d.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for x in v:
                    table(path + [k], x, "[[" + ".".join(_key(p) for p in path + [k]) + "]]")
        for k, v in d.items():
            if isinstance(v, dict):
                table(path + [k], v, "[" + ".".join(_key(p) for p in path + [k]) + "]")

    table([], data, None)
    return "\n".join(lines).strip("\n") + "\n"


# ---- writing -------------------------------------------------------------------------------
def population_dict(result, name: str | None = None) -> dict:
    """The population TOML schema (plus the ``[model.<name>]`` table) for a FitResult."""
    subgroups = []
    for g in result.subgroups:
        entry: dict[str, Any] = {"name": g.name, "weight": round(g.weight, 6),
                                 "sessions_per_week": round(g.sessions_per_week, 4)}
        for t in TRAIT_ORDER:
            mean, sd = g.traits[t]
            entry[t] = [round(mean, 6), round(sd, 6)]
        subgroups.append(entry)
    model_table: dict[str, Any] = {"skills": list(result.skill_ids)}
    for f, v in result.skill_params.items():
        model_table[f] = [float(x) for x in v]
    if result.global_params:
        model_table["global"] = {f: np.asarray(v, float).ravel().tolist() if np.ndim(v) else float(v)
                                 for f, v in result.global_params.items()}
    if result.item_params:
        model_table["items"] = {"ids": list(result.item_ids),
                                **{f: [float(x) for x in v] for f, v in result.item_params.items()}}
    fit_meta = {
        "method": result.method, "learners": result.counts["learners"],
        "interactions": result.counts["interactions"], "estimated_traits": list(result.estimated_traits),
        **{f"heldout_{k}": (round(v, 6) if isinstance(v, float) else v) for k, v in result.metrics.items()
           if not (isinstance(v, float) and not math.isfinite(v))},  # a metric without a value (AUC of one class) is left out
    }
    failed = getattr(result, "failed_skills", {}) or {}
    if failed:
        fit_meta["unfitted_skills"] = list(failed)
        fit_meta["unfitted_reasons"] = list(failed.values())
    return {
        "name": name or f"fitted-{result.model}",
        "description": (f"fitted to a learning log ({result.counts['learners']} learners, "
                        f"{result.counts['interactions']} responses) with the {result.model} model; trait shifts "
                        f"are on {result.model}'s scale"),
        "subgroups": subgroups,
        "model": {result.model: model_table},
        "fit": {result.model: fit_meta},
    }


def write_population(result, path: str | Path, name: str | None = None) -> Path:
    """Write the fitted population TOML atomically; returns the path."""
    from pedagogym.io import atomic_write_text

    path = Path(path)
    text = dumps_toml(population_dict(result, name),
                      comment="Fitted by `pedagogym fit`; learner ids never appear here (aggregates only).\n"
                              "Load as any population; [model.*] tables hold the fitted parameters.")
    atomic_write_text(path, text)
    return path


# ---- applying ------------------------------------------------------------------------------
class AppliedParams(NamedTuple):
    """Fitted parameters mapped onto a curriculum.

    params:         the model's Params for the curriculum (per-skill arrays in its skill order);
                    pass to ``model.apply_traits`` in place of ``model.default_params(curr)``.
    curriculum:     the curriculum arrays with fitted item difficulty/discrimination
                    where the file has them (IRT), else unchanged.
    missing_skills: curriculum skills the file has no parameters for (model defaults kept).
    missing_items:  curriculum items without fitted item parameters (only for files with items).
    """

    params: Any
    curriculum: CurriculumArrays
    missing_skills: tuple[str, ...]
    missing_items: tuple[str, ...]


def apply_fitted_params(model, curriculum: Curriculum, population_file: str | Path | dict) -> AppliedParams:
    """The fitted ``[model.<model.name>]`` parameters of ``population_file`` for ``curriculum``.

    Per-skill arrays are matched by skill id; skills the file lacks keep the model's
    defaults (listed in ``missing_skills``). Item parameters (IRT) are matched by item id.
    """
    import tomllib

    if isinstance(population_file, dict):
        data, source = population_file, "<dict>"
    else:
        source = str(population_file)
        try:
            data = tomllib.loads(Path(population_file).read_text())
        except FileNotFoundError:
            raise FittedParamsError(f"{source}: population file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise FittedParamsError(f"{source}: not valid TOML: {exc}") from None
    tables = data.get("model", {})
    if not isinstance(tables, dict) or model.name not in tables:
        have = sorted(tables) if isinstance(tables, dict) else []
        raise FittedParamsError(f"{source}: no [model.{model.name}] table of fitted parameters"
                                + (f"; it has {', '.join(have)}" if have else ""))
    table = tables[model.name]
    where = f"{source}: [model.{model.name}]"
    skills = table.get("skills")
    if not isinstance(skills, list) or not all(isinstance(s, str) for s in skills):
        raise FittedParamsError(f"{where}.skills: expected an array of skill ids")
    curr = curriculum.arrays()
    params = model.default_params(curr)
    col = {s: k for k, s in enumerate(skills)}
    target = np.asarray([col.get(s, -1) for s in curriculum.skill_ids])
    have = target >= 0
    for f in params._fields:
        default = getattr(params, f)
        if f in table:
            values = table[f]
            if not isinstance(values, list) or len(values) != len(skills):
                raise FittedParamsError(f"{where}.{f}: expected {len(skills)} numbers (one per skill)")
            v = np.asarray(values, np.float32)
            new = np.where(have, v[np.maximum(target, 0)], np.asarray(default, np.float32))
            params = params._replace(**{f: jnp.asarray(new, jnp.float32)})
    glob = table.get("global", {})
    for f, values in glob.items():
        if f not in params._fields:
            raise FittedParamsError(f"{where}.global.{f}: {model.name} has no parameter {f!r}")
        default = np.asarray(getattr(params, f))
        v = np.asarray(values, np.float32).reshape(default.shape) if np.size(values) == default.size else None
        if v is None:
            raise FittedParamsError(f"{where}.global.{f}: expected {default.size} number(s)")
        params = params._replace(**{f: jnp.asarray(v, jnp.float32)})
    missing_items: tuple[str, ...] = ()
    items = table.get("items")
    if items:
        ids = items.get("ids", [])
        icol = {i: k for k, i in enumerate(ids)}
        it = np.asarray([icol.get(i, -1) for i in curriculum.item_ids])
        for f in ("difficulty", "discrimination"):
            if f in items:
                if len(items[f]) != len(ids):
                    raise FittedParamsError(f"{where}.items.{f}: expected {len(ids)} numbers (one per item id)")
                v = np.asarray(items[f], np.float32)
                cur = np.asarray(getattr(curr, f))
                curr = curr._replace(**{f: jnp.asarray(np.where(it >= 0, v[np.maximum(it, 0)], cur), jnp.float32)})
        missing_items = tuple(i for i, k in zip(curriculum.item_ids, it) if k < 0)
    missing = tuple(s for s, ok in zip(curriculum.skill_ids, have) if not ok)
    return AppliedParams(params=params, curriculum=curr, missing_skills=missing, missing_items=missing_items)
