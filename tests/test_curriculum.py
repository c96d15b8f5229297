"""Curriculum loader: one test per validation rule (each checks the file, the key and the
problem in the message), the built-in curricula, arrays, designer order, round trips and
``resolve_curriculum``."""
from __future__ import annotations

import copy
import pickle
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from pedagogym.curriculum import (
    CURRICULA,
    Curriculum,
    CurriculumError,
    ItemKind,
    from_dict,
    load_curriculum,
    resolve_curriculum,
)
from pedagogym.curriculum import BUILTIN_DIR
from pedagogym.curriculum.spec import DIFFICULTY_RANGE, DISCRIMINATION_RANGE

SRC = "maths.toml"
REPO = Path(__file__).resolve().parents[1]

# A small valid curriculum: fractions requires numbers, adding requires fractions.
VALID = {
    "name": "valid",
    "description": "a small valid curriculum",
    "skills": [
        {"id": "numbers"},
        {"id": "fractions", "name": "Fractions", "prerequisites": ["numbers"]},
        {"id": "adding", "prerequisites": ["fractions", "numbers"]},
    ],
    "items": [
        {"id": "n1", "skills": ["numbers"], "difficulty": -1},
        {"id": "f1", "skills": "fractions", "kind": "video", "duration": 200},
        {"id": "f2", "skills": ["fractions"], "guess": 0.25, "slip": 0.1},
        {"id": "a1", "skills": ["adding", "fractions"], "difficulty": 1.5, "discrimination": 1.4, "kind": "assessment"},
    ],
}


def valid() -> dict:
    return copy.deepcopy(VALID)


def expect_error(data: dict, key: str, *problem: str, source: str = SRC) -> CurriculumError:
    """``from_dict`` fails, naming the source, the key and every fragment of the problem."""
    with pytest.raises(CurriculumError) as info:
        from_dict(data, source=source)
    err = info.value
    msg = str(err)
    assert err.source == source and msg.startswith(f"{source}: ")
    assert err.key == key, msg
    if key:
        assert f"{source}: {key}: " in msg
    for fragment in problem:
        assert fragment in err.problem, msg
    return err


# ---- the valid baseline ---------------------------------------------------------------------
def test_valid_dict_loads_with_defaults_and_conversions():
    c = from_dict(valid(), source=SRC)
    assert c.name == "valid" and c.description == "a small valid curriculum" and c.source == SRC
    assert c.skill_ids == ("numbers", "fractions", "adding") and c.item_ids == ("n1", "f1", "f2", "a1")
    numbers, fractions, adding = c.skills
    assert numbers.name == "numbers" and numbers.prerequisites == ()  # name defaults to the id
    assert fractions.name == "Fractions" and adding.prerequisites == ("fractions", "numbers")
    n1, f1, f2, a1 = c.items
    assert f1.skills == ("fractions",)  # a bare string is one skill
    assert n1.kind is ItemKind.PRACTICE and f1.kind is ItemKind.VIDEO and a1.kind is ItemKind.ASSESSMENT
    assert n1.discrimination == 1.0 and n1.duration == 60.0 and n1.guess is None and n1.slip is None
    assert isinstance(n1.difficulty, float) and n1.difficulty == -1.0  # ints become floats
    assert (f2.guess, f2.slip) == (0.25, 0.1)
    assert c.order == ()


def test_skill_with_no_items_is_allowed():
    data = valid()
    data["skills"].append({"id": "unused", "prerequisites": ["adding"]})
    c = from_dict(data, source=SRC)
    q = np.asarray(c.arrays().q_matrix)
    assert c.n_skills == 4 and q[:, c.skill_index("unused")].sum() == 0


# ---- one test per rule ----------------------------------------------------------------------
def test_missing_name():
    data = valid()
    del data["name"]
    expect_error(data, "name", "missing")


@pytest.mark.parametrize("bad", ["", "   ", 3, None, ["x"]])
def test_name_must_be_a_non_empty_string(bad):
    data = valid()
    data["name"] = bad
    expect_error(data, "name", "non-empty string")


def test_description_must_be_a_string():
    data = valid()
    data["description"] = 42
    expect_error(data, "description", "expected a string")


def test_unknown_skill_in_item():
    data = valid()
    data["skills"][1]["id"] = "fractions"
    data["items"][3]["skills"] = ["adding", "fractons"]
    expect_error(data, "items[3].skills[1]", "unknown skill 'fractons'", "did you mean 'fractions'?", "known: numbers, fractions, adding")


def test_unknown_skill_in_prerequisites():
    data = valid()
    data["skills"][2]["prerequisites"] = ["fractions", "numbrs"]
    expect_error(data, "skills[2].prerequisites[1]", "unknown skill 'numbrs'", "did you mean 'numbers'?")


def test_unknown_item_in_order():
    data = valid()
    data["order"] = ["n1", "f1", "f3", "a1"]
    expect_error(data, "order[2]", "unknown item 'f3'", "known: n1, f1, f2, a1")


def test_order_lists_an_item_twice():
    data = valid()
    data["order"] = ["n1", "f1", "f2", "f1", "a1"]
    expect_error(data, "order[3]", "'f1' is listed twice", "order[1]")


def test_order_must_list_every_item():
    data = valid()
    data["order"] = ["n1", "f1"]
    expect_error(data, "order", "missing item(s) 'f2', 'a1'", "every item exactly once")


def test_order_empty_is_an_error():
    data = valid()
    data["order"] = []
    expect_error(data, "order", "empty")


def test_given_order_is_kept():
    data = valid()
    data["order"] = ["f1", "n1", "a1", "f2"]
    c = from_dict(data, source=SRC)
    assert c.designer_order() == ("f1", "n1", "a1", "f2")
    np.testing.assert_array_equal(np.asarray(c.arrays().order), [1, 0, 3, 2])


def test_duplicate_skill_id():
    data = valid()
    data["skills"].append({"id": "fractions"})
    expect_error(data, "skills[3].id", "duplicate skill id 'fractions'", "skills[1]")


def test_duplicate_item_id():
    data = valid()
    data["items"].append({"id": "f2", "skills": ["numbers"]})
    expect_error(data, "items[4].id", "duplicate item id 'f2'", "items[2]")


def test_prerequisite_cycle_is_named():
    data = {"name": "cyc", "skills": [{"id": "a", "prerequisites": ["b"]}, {"id": "b", "prerequisites": ["c"]},
                                      {"id": "c", "prerequisites": ["a"]}],
            "items": [{"id": "i", "skills": ["a"]}]}
    expect_error(data, "skills[0].prerequisites", "prerequisite cycle a -> b -> c -> a")


def test_prerequisite_cycle_starts_at_its_earliest_skill():
    # DFS from 'root' enters the cycle at 'z' (root requires z); the message still starts at 'y'.
    data = {"name": "cyc", "skills": [{"id": "root", "prerequisites": ["z"]}, {"id": "y", "prerequisites": ["z"]},
                                      {"id": "z", "prerequisites": ["y"]}],
            "items": [{"id": "i", "skills": ["root"]}]}
    expect_error(data, "skills[1].prerequisites", "prerequisite cycle y -> z -> y")


def test_prerequisite_self_loop():
    data = valid()
    data["skills"][1]["prerequisites"] = ["numbers", "fractions"]
    expect_error(data, "skills[1].prerequisites[1]", "lists itself", "fractions -> fractions")


def test_prerequisite_listed_twice():
    data = valid()
    data["skills"][2]["prerequisites"] = ["numbers", "numbers"]
    expect_error(data, "skills[2].prerequisites[1]", "'numbers' is listed twice")


@pytest.mark.parametrize("skills", [[], "__missing__"])
def test_item_with_no_skill(skills):
    data = valid()
    if skills == "__missing__":
        del data["items"][2]["skills"]
    else:
        data["items"][2]["skills"] = skills
    expect_error(data, "items[2].skills", "'f2' must exercise at least one skill")


def test_item_lists_a_skill_twice():
    data = valid()
    data["items"][0]["skills"] = ["numbers", "numbers"]
    expect_error(data, "items[0].skills[1]", "'numbers' is listed twice")


@pytest.mark.parametrize("field, value", [("guess", 0.0), ("guess", 1.0), ("guess", -0.1), ("slip", 1.5), ("slip", 0)])
def test_probability_out_of_range(field, value):
    data = valid()
    data["items"][1][field] = value
    expect_error(data, f"items[1].{field}", "out of range", "strictly between 0 and 1")


def test_guess_plus_slip_must_be_below_one():
    data = valid()
    data["items"][2].update(guess=0.6, slip=0.4)
    expect_error(data, "items[2]", "guess + slip = 0.6 + 0.4 must be < 1")


@pytest.mark.parametrize("value", [DIFFICULTY_RANGE[1] + 0.5, DIFFICULTY_RANGE[0] - 1, 100])
def test_difficulty_out_of_range(value):
    data = valid()
    data["items"][0]["difficulty"] = value
    expect_error(data, "items[0].difficulty", "out of range", f"[{DIFFICULTY_RANGE[0]}, {DIFFICULTY_RANGE[1]}]")


def test_difficulty_range_is_inclusive():
    data = valid()
    data["items"][0]["difficulty"], data["items"][1]["difficulty"] = DIFFICULTY_RANGE
    data["items"][0]["discrimination"], data["items"][1]["discrimination"] = DISCRIMINATION_RANGE
    c = from_dict(data)
    assert (c.items[0].difficulty, c.items[1].difficulty) == DIFFICULTY_RANGE


@pytest.mark.parametrize("value", [0, -1.0, 0.01, DISCRIMINATION_RANGE[1] + 1])
def test_discrimination_out_of_range(value):
    data = valid()
    data["items"][3]["discrimination"] = value
    expect_error(data, "items[3].discrimination", "out of range", "discrimination")


@pytest.mark.parametrize("value", [0, -30.0])
def test_non_positive_duration(value):
    data = valid()
    data["items"][1]["duration"] = value
    expect_error(data, "items[1].duration", "not positive")


@pytest.mark.parametrize("value", ["quiz", "", 3, None])
def test_unknown_kind(value):
    data = valid()
    data["items"][0]["kind"] = value
    expect_error(data, "items[0].kind", "unknown kind", "practice", "worked_example", "assessment")


def test_kind_spelling_variants_are_normalised():
    data = valid()
    data["items"][0]["kind"] = "Worked Example"
    data["items"][1]["kind"] = "worked-example"
    c = from_dict(data)
    assert c.items[0].kind is c.items[1].kind is ItemKind.WORKED_EXAMPLE


@pytest.mark.parametrize("section", ["skills", "items"])
@pytest.mark.parametrize("value, problem", [([], "empty"), ("__missing__", "missing")])
def test_empty_curriculum(section, value, problem):
    data = valid()
    if value == "__missing__":
        del data[section]
    else:
        data[section] = value
    expect_error(data, section, problem, f"at least one entry in {section}")


@pytest.mark.parametrize("where, key, typo, suggestion", [
    ((), "", "itmes", "'items' for 'itmes'"),
    (("skills", 1), "skills[1]", "prereqs", "'prerequisites' for 'prereqs'"),
    (("items", 2), "items[2]", "dificulty", "'difficulty' for 'dificulty'"),
])
def test_unknown_keys(where, key, typo, suggestion):
    data = valid()
    target = data
    for step in where:
        target = target[step]
    target[typo] = 1
    err = expect_error(data, key, f"unknown key(s) ['{typo}']", suggestion, "allowed: [")
    if not key:
        assert "at the top level" in err.problem


@pytest.mark.parametrize("field, value, problem", [
    ("difficulty", "hard", "expected a number, got str 'hard'"),
    ("difficulty", True, "expected a number, got bool True"),
    ("discrimination", False, "expected a number, got bool"),
    ("duration", "60", "expected a number, got str"),
    ("difficulty", float("nan"), "finite"),
    ("duration", float("inf"), "finite"),
    ("guess", float("nan"), "finite"),
    ("skills", 3, "expected a list of skill ids"),
    ("skills", ["numbers", 2], "expected an id"),
    ("id", "two words", "without whitespace"),
    ("id", 7, "expected an id"),
])
def test_type_errors(field, value, problem):
    data = valid()
    data["items"][0][field] = value
    key = {"skills": "items[0].skills" + ("[1]" if isinstance(value, list) else ""), "id": "items[0].id"}.get(field, f"items[0].{field}")
    expect_error(data, key, problem)


def test_structural_type_errors():
    data = valid()
    data["skills"] = {"id": "a"}  # [skills] instead of [[skills]]
    expect_error(data, "skills", "expected an array of tables ([[skills]])")
    data = valid()
    data["items"][1] = "f1"
    expect_error(data, "items[1]", "expected a table")
    data = valid()
    data["skills"][0]["prerequisites"] = 5
    expect_error(data, "skills[0].prerequisites", "expected a list of skill ids")
    data = valid()
    del data["skills"][0]["id"]
    expect_error(data, "skills[0].id", "missing")
    data = valid()
    data["skills"][0]["name"] = ""
    expect_error(data, "skills[0].name", "non-empty string")
    expect_error(["not", "a", "table"], "", "expected a table")  # type: ignore[arg-type]


def test_error_attributes_and_pickling():
    data = valid()
    data["items"][0]["kind"] = "quiz"
    with pytest.raises(CurriculumError) as info:
        from_dict(data, source=SRC)
    err = info.value
    assert isinstance(err, ValueError)
    assert str(err) == f"{err.source}: {err.key}: {err.problem}"
    again = pickle.loads(pickle.dumps(err))
    assert (again.source, again.key, again.problem, str(again)) == (err.source, err.key, err.problem, str(err))


# ---- TOML files ---------------------------------------------------------------------------
TINY_TOML = """
name = "from_file"
[[skills]]
id = "a"
[[skills]]
id = "b"
prerequisites = ["a"]
[[items]]
id = "i1"
skills = "a"
[[items]]
id = "i2"
skills = ["b", "a"]
kind = "assessment"
"""


def test_load_toml_file(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(TINY_TOML)
    c = load_curriculum(path)
    assert c.name == "from_file" and c.source == str(path) and c.n_items == 2
    assert c.items[1].skills == ("b", "a") and c.items[1].kind is ItemKind.ASSESSMENT


def test_toml_file_errors_name_the_file(tmp_path):
    path = tmp_path / "maths.toml"
    path.write_text(TINY_TOML.replace('skills = ["b", "a"]', 'skills = ["b", "fractons"]'))
    with pytest.raises(CurriculumError) as info:
        load_curriculum(path)
    assert str(info.value).startswith(f"{path}: items[1].skills[1]: unknown skill 'fractons'")
    assert "maths.toml" in str(info.value)


def test_toml_nan_and_bool(tmp_path):
    path = tmp_path / "nan.toml"
    path.write_text(TINY_TOML + "difficulty = nan\n")
    with pytest.raises(CurriculumError, match=r"nan\.toml: items\[1\]\.difficulty: expected a finite number"):
        load_curriculum(path)
    path.write_text(TINY_TOML + "duration = true\n")
    with pytest.raises(CurriculumError, match=r"items\[1\]\.duration: expected a number, got bool"):
        load_curriculum(path)


def test_file_not_found(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(CurriculumError) as info:
        load_curriculum(path)
    assert info.value.source == str(path) and info.value.key == "" and "not found" in str(info.value)


def test_toml_syntax_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[[skills]\nid = "a"\n')
    with pytest.raises(CurriculumError) as info:
        load_curriculum(path)
    assert str(info.value).startswith(f"{path}: not valid TOML") and "line 2" in str(info.value)


def test_top_level_key_after_table_gets_a_hint(tmp_path):
    path = tmp_path / "late.toml"
    path.write_text(TINY_TOML + 'order = ["i2", "i1"]\n')
    with pytest.raises(CurriculumError) as info:
        load_curriculum(path)
    err = info.value
    assert err.key == "items[1]" and "unknown key(s) ['order']" in err.problem
    assert "must come before the first [[skills]] or [[items]]" in err.problem


# ---- designer order, arrays, round trips ----------------------------------------------------
def _requires(c: Curriculum) -> dict[str, set[str]]:
    """Transitive prerequisites of every skill."""
    direct = {s.id: set(s.prerequisites) for s in c.skills}
    out: dict[str, set[str]] = {}

    def close(sid: str) -> set[str]:
        if sid not in out:
            out[sid] = set(direct[sid]).union(*(close(p) for p in direct[sid])) if direct[sid] else set()
        return out[sid]

    for sid in direct:
        close(sid)
    return out


def _assert_order_respects_prerequisites(c: Curriculum, order: tuple[str, ...]) -> None:
    """No item's main skill (its latest in topological order) comes before one of its prerequisites'."""
    rank = {sid: r for r, sid in enumerate(c.topological_skills())}
    requires = _requires(c)
    main = {it.id: max(it.skills, key=rank.__getitem__) for it in c.items}
    for k, earlier in enumerate(order):
        for later in order[k + 1:]:
            assert main[later] not in requires[main[earlier]], (earlier, later)


def test_designer_order_respects_prerequisites_when_no_order_is_given():
    data = {"name": "shuffled",
            "skills": [{"id": "c", "prerequisites": ["b"]}, {"id": "a"}, {"id": "d", "prerequisites": ["a"]},
                       {"id": "b", "prerequisites": ["a"]}],
            "items": [{"id": "c1", "skills": ["c"]}, {"id": "bd", "skills": ["b", "d"]}, {"id": "a1", "skills": ["a"]},
                      {"id": "b1", "skills": ["b"]}, {"id": "d1", "skills": ["d"]}, {"id": "a2", "skills": ["a"]}]}
    c = from_dict(data)
    order = c.designer_order()
    assert sorted(order) == sorted(c.item_ids)
    assert order[:2] == ("a1", "a2") and order[-1] == "c1"
    _assert_order_respects_prerequisites(c, order)


BUILTINS = ["maths_fractions", "vocab_spanish", "tiny"]


def test_registry_holds_every_builtin_file_under_its_name():
    stems = sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))
    assert sorted(CURRICULA.names()) == stems
    assert set(BUILTINS) <= set(stems)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_is_a_valid_dag_with_consistent_arrays(name):
    c = CURRICULA.get(name)
    assert c.name == name and Path(c.source).name == f"{name}.toml"
    topo = c.topological_skills()  # raises on a cycle
    assert sorted(topo) == sorted(c.skill_ids)
    rank = {sid: r for r, sid in enumerate(topo)}
    for s in c.skills:
        assert all(rank[p] < rank[s.id] for p in s.prerequisites)
        assert s.id not in _requires(c)[s.id]

    a = c.arrays()
    I, S = c.n_items, c.n_skills
    assert a.q_matrix.shape == (I, S) and a.q_matrix.dtype == jnp.float32
    assert a.prereq.shape == (S, S) and a.prereq.dtype == jnp.float32
    for field in ("difficulty", "discrimination", "guess", "slip", "duration"):
        assert getattr(a, field).shape == (I,) and getattr(a, field).dtype == jnp.float32, field
    assert a.kind.shape == (I,) and a.kind.dtype == jnp.int32
    assert a.order.shape == (I,) and a.order.dtype == jnp.int32
    np.testing.assert_array_equal(np.sort(np.asarray(a.order)), np.arange(I))  # a permutation
    q = np.asarray(a.q_matrix)
    assert set(np.unique(q)) <= {0.0, 1.0} and np.all(q.sum(axis=1) >= 1)
    for i, item in enumerate(c.items):
        assert {c.skill_ids[s] for s in np.flatnonzero(q[i])} == set(item.skills)
    pre = np.asarray(a.prereq)
    assert np.trace(pre) == 0 and pre.sum() == sum(len(s.prerequisites) for s in c.skills)
    assert np.all(np.asarray(a.duration) > 0)
    _assert_order_respects_prerequisites(c, c.designer_order())


@pytest.mark.parametrize("name", BUILTINS)
def test_round_trip_and_content_hash(name):
    c = CURRICULA.get(name)
    again = from_dict(c.to_dict(), source="<round trip>")
    assert again == c and again.to_dict() == c.to_dict()
    assert again.content_hash() == c.content_hash() == load_curriculum(c.source).content_hash()
    assert len(c.content_hash()) == 64
    changed = c.to_dict()
    changed["items"][0]["difficulty"] += 0.1
    assert from_dict(changed).content_hash() != c.content_hash()


def test_content_hash_ignores_source_key_order_and_int_vs_float():
    a = from_dict(valid(), source="a.toml")
    data = valid()
    data["items"][0] = {"difficulty": -1.0, "skills": ["numbers"], "id": "n1"}
    data = dict(reversed(list(data.items())))
    b = from_dict(data, source="b.toml")
    assert a == b and a.content_hash() == b.content_hash()


def test_content_hash_golden_value():
    # Bundles and manifests record this hash; a change means their curricula no longer match.
    c = from_dict({"name": "g", "skills": [{"id": "s"}], "items": [{"id": "i", "skills": "s"}]})
    assert c.content_hash() == "4ab24bac8f36de8b0e8f6126041d038c6f9b8b39e5c8eaf87c7aba015f206599"


def test_maths_fractions_is_a_rich_unit():
    c = CURRICULA.get("maths_fractions")
    assert c.n_skills >= 12 and c.n_items >= 48
    kinds = [it.kind for it in c.items]
    assert kinds.count(ItemKind.PRACTICE) > c.n_items / 2 and set(kinds) == set(ItemKind)
    for s in c.skill_ids:  # an assessment item per skill
        assert any(it.kind is ItemKind.ASSESSMENT and s in it.skills for it in c.items), s
    assert sum(1 for s in c.skills if len(s.prerequisites) >= 2) >= 3  # joins
    children: dict[str, int] = {}
    for s in c.skills:
        for p in s.prerequisites:
            children[p] = children.get(p, 0) + 1
    assert sum(1 for n in children.values() if n >= 2) >= 3  # branches
    assert any(len(it.skills) == 3 for it in c.items) and sum(len(it.skills) > 1 for it in c.items) >= 5
    d = np.array([it.difficulty for it in c.items])
    assert d.min() <= -1.8 and d.max() >= 2.3
    for it in c.items:
        if it.kind is ItemKind.VIDEO:
            assert 180 <= it.duration <= 300, it.id
        if it.kind is ItemKind.PRACTICE:
            assert 30 <= it.duration <= 90, it.id
    # difficulty rises along the DAG: each skill's mean item difficulty exceeds its prerequisites'
    mean = {s: np.mean([it.difficulty for it in c.items if it.skills[0] == s]) for s in c.skill_ids}
    for s in c.skills:
        assert all(mean[p] < mean[s.id] for p in s.prerequisites), s.id
    assert c.order and c.order != c.item_ids  # a designer order, not the file order


def test_vocab_spanish_is_a_flashcard_deck():
    c = CURRICULA.get("vocab_spanish")
    assert c.n_skills >= 40 and c.n_items == c.n_skills
    assert all(not s.prerequisites for s in c.skills)
    for s, it in zip(c.skills, c.items):
        assert it.id == f"w_{s.id}" and it.skills == (s.id,) and it.kind is ItemKind.PRACTICE
        assert 10 <= it.duration <= 20
    d = np.array([it.difficulty for it in c.items])
    assert d.max() - d.min() >= 2.0
    length = np.array([len(s.id) for s in c.skills])
    assert np.corrcoef(length, d)[0, 1] > 0.5  # longer words are harder


def test_tiny_is_a_chain():
    c = CURRICULA.get("tiny")
    assert c.skill_ids == ("a", "b", "c") and [s.prerequisites for s in c.skills] == [(), ("a",), ("b",)]
    assert c.n_items == 6 and all(it.kind is ItemKind.PRACTICE for it in c.items)
    assert [len([it for it in c.items if it.skills == (s,)]) for s in "abc"] == [2, 2, 2]


def test_sizes_required_by_the_envs():
    maths, vocab = CURRICULA.get("maths_fractions"), CURRICULA.get("vocab_spanish")
    assert maths.n_skills >= 10 and maths.n_items >= 40
    assert vocab.n_items >= 30


# ---- resolve_curriculum ------------------------------------------------------------------
def test_resolve_by_name():
    assert resolve_curriculum("tiny") is CURRICULA.get("tiny")


def test_resolve_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(TINY_TOML)
    assert resolve_curriculum(str(path)).name == "from_file"
    assert resolve_curriculum(path).name == "from_file"
    via_link = resolve_curriculum(str(REPO / "experiments" / "curricula" / "maths_fractions.toml"))
    assert via_link == CURRICULA.get("maths_fractions")


def test_resolve_passes_a_curriculum_through():
    c = from_dict(valid())
    assert resolve_curriculum(c) is c


def test_resolve_bad_name():
    with pytest.raises(CurriculumError) as info:
        resolve_curriculum("no_such_curriculum")
    msg = str(info.value)
    assert msg.startswith("no_such_curriculum: unknown curriculum")
    assert all(name in msg for name in BUILTINS) and ".toml" in msg


def test_resolve_missing_toml_path(tmp_path):
    with pytest.raises(CurriculumError, match="not found"):
        resolve_curriculum(str(tmp_path / "nope.toml"))
