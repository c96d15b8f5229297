"""Experiment configs: which envs / student models / populations, which policies, how many
learners and seeds. Loaded from TOML, validated up front (errors name the file and key),
frozen afterwards."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pedagogym.errors import PedagogymError
from pedagogym.io import SAFE_NAME_RULE, is_safe_name, parse_seeds

MAX_LEARNERS = 100_000_000  # per cell; bounds the host arrays (about 64 bytes a learner) before any XLA call

METRICS = ("post_test", "final_mastery", "mean_recall", "log_recall", "steps_to_mastery", "mastered", "dropped",
           "time_spent_min", "days", "total_reward", "ability_rmse", "test_length")


class ExperimentConfigError(PedagogymError):
    """A bad experiment config; the message names the file, the key and the problem."""


@dataclass(frozen=True)
class EnvEntry:
    """One simulator setting: a registered env id with overrides, run under each model and population."""

    id: str
    label: str
    models: tuple[str, ...]
    populations: tuple[str, ...]
    settings: tuple[tuple[str, Any], ...] = ()
    policies: tuple[str, ...] = ()  # empty = the experiment's policies

    def settings_dict(self) -> dict[str, Any]:
        return dict(self.settings)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    envs: tuple[EnvEntry, ...]
    policies: tuple[str, ...]
    learners: int = 1000
    seeds: tuple[int, ...] = (0,)
    metrics: tuple[str, ...] = METRICS
    baseline: str = "random"
    source: str = field(default="<dict>", compare=False)

    def policies_for(self, env: EnvEntry) -> tuple[str, ...]:
        return env.policies or self.policies

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "learners": self.learners, "seeds": list(self.seeds), "policies": list(self.policies),
            "metrics": list(self.metrics), "baseline": self.baseline,
            "envs": [{"id": e.id, "label": e.label, "models": list(e.models), "populations": list(e.populations),
                      "settings": e.settings_dict(), "policies": list(self.policies_for(e))} for e in self.envs],
        }


def _err(source: str, key: str, problem: str) -> ExperimentConfigError:
    return ExperimentConfigError(f"{source}: {key}: {problem}")


def _str_list(value: Any, source: str, key: str, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(source, key, f"expected a list of names, got {value!r}")
    if not value and not allow_empty:
        raise _err(source, key, "must not be empty")
    if len(set(value)) != len(value):
        raise _err(source, key, f"duplicate entries in {value!r}")
    return tuple(value)


def experiment_from_dict(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate the shape of a config and resolve every name in it (envs, models,
    populations, policies), so that a bad config fails before any simulation starts."""
    from pedagogym.envs import ENV_IDS, EnvConfigError, make
    from pedagogym.agents import CheckpointError, check_compatible, is_agent_name, parse_agent_name, read_run_manifest
    from pedagogym.policies import POLICIES

    allowed = {"name", "description", "learners", "seeds", "policies", "metrics", "baseline", "envs"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _err(source, ",".join(unknown), f"unknown key(s); allowed: {sorted(allowed)}")
    name = data.get("name")
    if not is_safe_name(name):  # it names the default output folder results/<name>
        raise _err(source, "name", f"expected a name of {SAFE_NAME_RULE}, got {name!r}")
    learners = data.get("learners", 1000)
    if not isinstance(learners, int) or isinstance(learners, bool) or not 1 <= learners <= MAX_LEARNERS:
        raise _err(source, "learners", f"expected a positive integer of at most {MAX_LEARNERS:,}, got {learners!r}")
    seeds = parse_seeds(data.get("seeds", [0]))
    if seeds is None:
        raise _err(source, "seeds", f"expected a non-empty list of distinct non-negative integers, got {data['seeds']!r}")
    def check_policies(value: Any, key: str) -> tuple[str, ...]:
        names = _str_list(value, source, key)
        for k, p in enumerate(names):
            if is_agent_name(p):
                try:
                    read_run_manifest(parse_agent_name(p)[0])
                except CheckpointError as exc:
                    raise _err(source, f"{key}[{k}]", str(exc)) from None
            elif p not in POLICIES:
                raise _err(source, f"{key}[{k}]", f"unknown policy {p!r}; known: {', '.join(POLICIES.names())} "
                                                  "or a trained agent 'agent:RUN_DIR[#K|#best]'")
        return names

    has_env_policies = isinstance(data.get("envs"), list) and all(isinstance(e, dict) and "policies" in e
                                                                   for e in data["envs"])
    if "policies" in data:
        policies = check_policies(data["policies"], "policies")
    elif has_env_policies:
        policies = ()
    else:
        raise _err(source, "policies", "missing: list the policies to compare (or give every [[envs]] its own)")
    metrics = _str_list(data.get("metrics", list(METRICS)), source, "metrics")
    for k, m in enumerate(metrics):
        if m not in METRICS:
            raise _err(source, f"metrics[{k}]", f"unknown metric {m!r}; known: {', '.join(METRICS)}")
    baseline = data.get("baseline", "random")

    envs_raw = data.get("envs")
    if not isinstance(envs_raw, list) or not envs_raw:
        raise _err(source, "envs", "expected a non-empty array of tables ([[envs]])")
    envs, labels = [], set()
    for k, e in enumerate(envs_raw):
        where = f"envs[{k}]"
        if not isinstance(e, dict):
            raise _err(source, where, "must be a table")
        bad = sorted(set(e) - {"id", "label", "models", "populations", "settings", "policies"})
        if bad:
            raise _err(source, f"{where}.{bad[0]}", "unknown key; allowed: id, label, models, populations, settings, policies")
        env_id = e.get("id")
        if env_id not in ENV_IDS:
            raise _err(source, f"{where}.id", f"unknown env id {env_id!r}; known: {', '.join(ENV_IDS.names())}")
        settings = e.get("settings", {})
        if not isinstance(settings, dict):
            raise _err(source, f"{where}.settings", "must be a table of env settings")
        base = ENV_IDS.get(env_id)
        models = _str_list(e.get("models", [base.model]), source, f"{where}.models")
        populations = _str_list(e.get("populations", [base.population]), source, f"{where}.populations")
        label = e.get("label", env_id.split("/")[-1])
        if not isinstance(label, str) or not label or label in labels:
            raise _err(source, f"{where}.label", f"labels must be unique non-empty strings, got {label!r}")
        labels.add(label)
        for m in models:  # resolve everything now: fail before any work starts
            for p in populations:
                try:
                    built = make(env_id, **{**settings, "model": m, "population": p})
                except EnvConfigError as exc:
                    raise _err(source, where, str(exc)) from None
                for k_pol, pol in enumerate(e.get("policies", data.get("policies", []))):
                    if is_agent_name(pol):  # trained on the same observation and action sizes?
                        try:
                            check_compatible(pol, read_run_manifest(parse_agent_name(pol)[0]), built)
                        except CheckpointError as exc:
                            raise _err(source, f"{where}.policies[{k_pol}]" if "policies" in e else
                                       f"policies[{k_pol}]", str(exc)) from None
        env_policies = check_policies(e["policies"], f"{where}.policies") if "policies" in e else ()
        if baseline not in (env_policies or policies):
            raise _err(source, "baseline" if not env_policies else f"{where}.policies",
                       f"the baseline policy {baseline!r} must be among the policies {list(env_policies or policies)}")
        envs.append(EnvEntry(id=env_id, label=label, models=models, populations=populations,
                             settings=tuple(sorted(settings.items())), policies=env_policies))
    return ExperimentConfig(name=name, envs=tuple(envs), policies=policies, learners=learners,
                            seeds=seeds, metrics=metrics, baseline=baseline, source=source)


def load_experiment(path: str | Path) -> ExperimentConfig:
    from pedagogym.tomlfile import read_toml

    data = read_toml(path, ExperimentConfigError, "experiment config")
    return experiment_from_dict(data, source=str(path))


def ci_halfwidth(sd: float, n: int, level: float = 0.95) -> float:
    """Half-width of a t-based confidence interval for a mean."""
    from scipy import stats

    if n < 2 or not math.isfinite(sd):
        return float("nan")
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
