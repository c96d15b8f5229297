"""The package's shape (issue 19): no import cycle between modules, and imports point down the
layers. The graph is read with ``ast`` from every ``import`` in ``pedagogym/``, function-level
ones included (a cycle hidden in a function is still a cycle); ``if TYPE_CHECKING:`` imports,
which never run, are left out. Exceptions are listed below with their reason; the lists must
stay short, and an entry that no longer applies fails the test too, so that it is removed."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from pedagogym.policies.base import Policy
from pedagogym.student_models.base import StudentModel

ROOT = Path(__file__).resolve().parents[1] / "pedagogym"

# cycles (strongly connected components of the import graph) that exist today, with why
ALLOWED_CYCLES: dict[frozenset[str], str] = {
    frozenset({"pedagogym.envs.config", "pedagogym.envs.registration"}):
        "config resolves reward / featurizer names in the registries; registration builds the ids' EnvConfigs "
        "in a lazy loader (function-level, so that `import pedagogym` imports no JAX)",
}

# layers, bottom first: a module may import its own layer and the ones below. The agents sit
# below experiments (a run evaluates `agent:RUN_DIR` policies; agents never import experiments);
# each feature's own command-line module (`pedagogym.<feature>.cli`) belongs to the CLI layer.
LAYERS = (
    ("neutral", ("_version", "argtypes", "errors", "io", "pinned_pool", "registry", "tomlfile", "sharding", "schema")),
    ("curriculum", ("curriculum",)),
    ("student_models", ("student_models",)),
    ("envs", ("envs", "__init__")),  # the package root registers the env ids with Gymnasium (issue 18)
    ("policies", ("policies",)),
    ("agents", ("agents",)),
    ("experiments", ("experiments",)),
    ("features", ("stress", "fitting", "warning", "export", "bench", "replicate")),
    ("cli", ("cli", "__main__")),  # __main__: `python -m pedagogym`
)
# imports against the layers that exist today, with why: (importer, imported) -> reason
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("pedagogym.envs.config", "pedagogym.fitting.population_file"):
        "a fitted population's parameters are applied when the env is built; the reader belongs below envs",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """module -> the pedagogym modules it imports (``from a.b import c`` counts ``a.b``, whose
    ``__init__`` runs, and ``a.b.c`` when that is a module), as the project's cycle hook counts."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]  # base: its __init__ runs
            else:
                continue
            for name in names:
                target = resolve(name) if name.split(".")[0] == "pedagogym" else None
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    for root in sorted(set(graph) | {t for ts in graph.values() for t in ts}):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def layer_of(module: str) -> int | None:
    """Index in LAYERS of a module (None: the deploy runtime, which stands alone)."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    if head == "deploy":
        return None
    if parts[-1] == "cli":  # pedagogym.cli and every pedagogym.<feature>.cli
        return len(LAYERS) - 1
    return next(k for k, (_, heads) in enumerate(LAYERS) if head in heads)


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Imports from a lower layer into a higher one, and any import out of the deploy runtime."""
    bad = set()
    for mod, targets in graph.items():
        for t in targets:
            lm, lt = layer_of(mod), layer_of(t)
            if lm is None:
                if lt is not None:
                    bad.add((mod, t))
            elif lt is not None and lt > lm:
                bad.add((mod, t))
    return bad


GRAPH = import_graph()


def test_graph_sees_function_level_imports():
    # cli imports pedagogym.experiments only inside _cmd_run
    assert "pedagogym.experiments" in GRAPH["pedagogym.cli"]


def test_no_import_cycles_but_the_listed_ones():
    found = set(cycles(GRAPH))
    new = [sorted(c) for c in found - set(ALLOWED_CYCLES)]
    stale = [sorted(c) for c in set(ALLOWED_CYCLES) - found]
    assert not new, f"import cycles (function-level imports count): {new}"
    assert not stale, f"allow-listed cycles that no longer exist (remove them from ALLOWED_CYCLES): {stale}"


def test_imports_point_down_the_layers():
    found = upward_imports(GRAPH)
    new = sorted(found - set(ALLOWED_UPWARD))
    stale = sorted(set(ALLOWED_UPWARD) - found)
    assert not new, f"imports against the layers {[name for name, _ in LAYERS]} (or out of deploy/): {new}"
    assert not stale, f"allow-listed upward imports that no longer exist (remove them from ALLOWED_UPWARD): {stale}"


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]


def test_abstract_bases_fail_at_construction():
    class Incomplete(StudentModel):
        name, family = "incomplete", "skill"

        def init(self, key, params, curr):
            return None

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
    with pytest.raises(TypeError, match="implement scores"):
        type("Nothing", (Policy,), {"name": "nothing"})


if __name__ == "__main__":  # print what the lists would hold today
    for c in cycles(GRAPH):
        print("cycle", sorted(c))
    for e in sorted(upward_imports(GRAPH)):
        print("upward", e)


# ---- one observation schema ---------------------------------------------------------------------
def test_schema_is_jax_free_and_every_reader_agrees():
    from pedagogym import schema
    from pedagogym.deploy import features as deploy_features
    from pedagogym.envs.observations import PlatformFeatures

    tree = ast.parse((ROOT / "schema.py").read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "collections"}, imported
    skills, items = ("a", "b"), ("a1", "a2", "b1")
    names = schema.feature_names(skills, items)
    assert len(names) == schema.n_features(2, 3) == 3 * 2 + 3 * 3 + 5
    assert PlatformFeatures().feature_names(skills, items) == names == deploy_features.feature_names(skills, items)
    assert deploy_features.FEATURE_GROUPS == schema.FEATURE_GROUPS
    assert (deploy_features.RT_SCALE_S, deploy_features.SECONDS_PER_DAY) == (schema.RT_SCALE_S, schema.SECONDS_PER_DAY)


def test_a_bundle_with_another_schema_is_refused(tmp_path):
    import json
    import shutil

    from pedagogym import schema
    from pedagogym.deploy.bundle import BundleError, load_bundle

    src = ROOT.parent / "clients" / "node" / "test" / "fixtures" / "bundle"
    for edit, match in ((lambda o: o.update(groups=list(reversed(schema.manifest_section()["groups"]))), "groups"),
                        (lambda o: o.update(rt_scale_s=300.0), "rt_scale_s")):
        dst = tmp_path / match
        shutil.copytree(src, dst)
        m = json.loads((dst / "manifest.json").read_text())
        m["observation"].update(schema.manifest_section())  # what `pedagogym export` writes now
        edit(m["observation"])
        (dst / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(BundleError, match=match):
            load_bundle(dst)
