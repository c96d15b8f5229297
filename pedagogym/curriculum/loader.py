"""Load and validate curricula from TOML files or plain dicts.

Schema (every key not listed here is an error, so a typo never passes silently)::

    name = "maths_fractions"            # required, non-empty string
    description = "..."                 # optional string
    order = ["i1", "i2", ...]           # optional: the designer's order; every item exactly once

    [[skills]]
    id = "equivalent"                   # required; unique; no whitespace
    name = "Equivalent fractions"       # optional, default = id
    prerequisites = ["factors"]         # optional skill ids (a bare string for one), default []

    [[items]]
    id = "eq_p1"                        # required; unique; no whitespace
    skills = ["equivalent"]             # required, non-empty (a bare string for one skill)
    difficulty = 0.3                    # IRT b, default 0.0, within spec.DIFFICULTY_RANGE
    discrimination = 1.2                # IRT a, default 1.0, within spec.DISCRIMINATION_RANGE
    guess = 0.2                         # optional, strictly inside (0, 1)
    slip = 0.1                          # optional, strictly inside (0, 1); guess + slip < 1
    kind = "practice"                   # practice | hint | worked_example | video | assessment
    duration = 60                       # expected seconds on the item, > 0, default 60

Rules beyond types and ranges: skill and item ids are unique; every skill reference (in an
item's ``skills`` and in ``prerequisites``) names a defined skill; the prerequisite graph is
acyclic (the error names the cycle, ``a -> b -> c -> a``, each skill requiring the next);
a curriculum has at least one skill and one item; ``order``, when given, lists every item id
exactly once (it is not required to respect prerequisites: a designer may choose otherwise,
and the stress report is where that is judged).

A skill that no item exercises is *allowed* (a skill taught elsewhere, or a deck still being
written): it appears in the Q-matrix as an all-zero column. Note that with prerequisite
gating its dependants can only unlock for learners who already know it.

Every error is a :class:`CurriculumError` whose message reads ``SOURCE: KEY: PROBLEM``,
e.g. ``maths.toml: items[3].skills[1]: unknown skill 'fractons' (did you mean 'fractions'?;
known: ...)``.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from pedagogym.errors import PedagogymError
from pedagogym.curriculum.spec import (
    DIFFICULTY_RANGE,
    DISCRIMINATION_RANGE,
    Curriculum,
    Item,
    ItemKind,
    Skill,
)

TOP_KEYS = ("name", "description", "order", "skills", "items")
SKILL_KEYS = ("id", "name", "prerequisites")
ITEM_KEYS = ("id", "skills", "difficulty", "discrimination", "guess", "slip", "kind", "duration")
KIND_NAMES = tuple(k.label for k in ItemKind)
DEFAULT_DURATION = 60.0

_ID = re.compile(r"\S+")
_MAX_LISTED = 15


class CurriculumError(PedagogymError):
    """An invalid curriculum. ``str(err)`` is ``SOURCE: KEY: PROBLEM`` (no KEY for file-level errors).

    Attributes: ``source`` (file path or ``"<dict>"``), ``key`` (path inside the document, e.g.
    ``items[3].skills[1]``; ``""`` for the whole file) and ``problem`` (what is wrong).
    """

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")

    def __reduce__(self):  # picklable across processes despite the 3-argument constructor
        return (type(self), (self.source, self.key, self.problem))


# ---- small helpers ------------------------------------------------------------------------
def _listing(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?; " if close else ""
    return f"unknown {what} {name!r} ({hint}known: {_listing(known) or '(none)'})"


class _Checker:
    """Validation helpers bound to one source, so every error names it."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str) -> CurriculumError:
        return CurriculumError(self.source, key, problem)

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table, got {type(value).__name__} {value!r}")
        return value

    def no_unknown_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], key: str) -> None:
        unknown = [k for k in table if k not in allowed]
        if unknown:
            hints = [f"{m[0]!r} for {k!r}" for k in unknown if (m := difflib.get_close_matches(str(k), allowed, n=1))]
            hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
            where = "" if key else " at the top level"
            if key and any(k in TOP_KEYS for k in unknown):  # the classic TOML slip
                hint += (f"; note: in TOML, keys written after a [[table]] header belong to that table, so "
                         f"top-level keys ({', '.join(TOP_KEYS)}) must come before the first [[skills]] or [[items]]")
            raise self.fail(key, f"unknown key(s) {sorted(map(str, unknown))}{where}{hint}; allowed: {list(allowed)}")

    def string(self, value: Any, key: str, what: str = "a non-empty string") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected {what}, got {value!r}")
        return value

    def new_id(self, entry: Mapping[str, Any], kind: str, k: int, first_at: dict[str, int]) -> str:
        """The ``id`` of entry ``k`` of ``<kind>s`` (e.g. ``items[3]``), checked present,
        well-formed and not seen before; recorded in ``first_at`` (id -> index)."""
        where = f"{kind}s[{k}]"
        if "id" not in entry:
            raise self.fail(f"{where}.id", f"missing: every {kind} needs an id")
        new = self.ident(entry["id"], f"{where}.id")
        if new in first_at:
            raise self.fail(f"{where}.id", f"duplicate {kind} id {new!r} (first defined at {kind}s[{first_at[new]}])")
        first_at[new] = k
        return new

    def ident(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise self.fail(key, f"expected an id: a non-empty string without whitespace, got {value!r}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        return float(value)

    def in_range(self, value: Any, key: str, lo: float, hi: float, what: str) -> float:
        x = self.number(value, key)
        if not lo <= x <= hi:
            raise self.fail(key, f"{x!r} is out of range: {what} must be within [{lo}, {hi}]")
        return x

    def id_list(self, value: Any, key: str, what: str) -> list[str]:
        """A list of ids (a bare string counts as a list of one)."""
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list of {what} ids, got {type(value).__name__} {value!r}")
        return [self.ident(v, f"{key}[{k}]") for k, v in enumerate(value)]

    def array_of_tables(self, data: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
        value = data.get(name)
        if value is None:
            raise self.fail(name, f"missing: a curriculum needs at least one entry in {name} ([[{name}]] tables)")
        if not isinstance(value, list):
            raise self.fail(name, f"expected an array of tables ([[{name}]]), got {type(value).__name__}")
        if not value:
            raise self.fail(name, f"empty: a curriculum needs at least one entry in {name} ([[{name}]] tables)")
        return [self.table(v, f"{name}[{k}]") for k, v in enumerate(value)]


# ---- the validator ------------------------------------------------------------------------
def _find_cycle(prereqs: dict[str, list[str]]) -> list[str] | None:
    """A prerequisite cycle as a closed path ``[a, b, ..., a]`` (a requires b, ...), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(prereqs, WHITE)
    for root in prereqs:
        if colour[root] != WHITE:
            continue
        colour[root] = GREY
        path, stack = [root], [iter(prereqs[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                stack.pop()
            elif colour[nxt] == GREY:
                return path[path.index(nxt):] + [nxt]
            elif colour[nxt] == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                stack.append(iter(prereqs[nxt]))
    return None


def _skills(chk: _Checker, raw: list[Mapping[str, Any]]) -> tuple[Skill, ...]:
    first_at: dict[str, int] = {}
    parsed: list[tuple[str, str, list[str]]] = []
    for k, s in enumerate(raw):
        where = f"skills[{k}]"
        chk.no_unknown_keys(s, SKILL_KEYS, where)
        sid = chk.new_id(s, "skill", k, first_at)
        name = chk.string(s.get("name", sid), f"{where}.name")
        pre = chk.id_list(s.get("prerequisites", []), f"{where}.prerequisites", "skill")
        parsed.append((sid, name, pre))

    for k, (sid, _, pre) in enumerate(parsed):
        seen: set[str] = set()
        for j, p in enumerate(pre):
            key = f"skills[{k}].prerequisites[{j}]"
            if p == sid:
                raise chk.fail(key, f"skill {sid!r} lists itself as a prerequisite (prerequisite cycle {sid} -> {sid})")
            if p not in first_at:
                raise chk.fail(key, _unknown("skill", p, first_at))
            if p in seen:
                raise chk.fail(key, f"prerequisite {p!r} is listed twice")
            seen.add(p)

    cycle = _find_cycle({sid: pre for sid, _, pre in parsed})
    if cycle is not None:
        start = min(range(len(cycle) - 1), key=lambda k: first_at[cycle[k]])  # begin at the earliest-defined skill
        cycle = cycle[start:-1] + cycle[:start] + [cycle[start]]
        raise chk.fail(f"skills[{first_at[cycle[0]]}].prerequisites",
                       f"prerequisite cycle {' -> '.join(cycle)} (each skill requires the next)")
    return tuple(Skill(id=sid, name=name, prerequisites=tuple(pre)) for sid, name, pre in parsed)


def _probability(chk: _Checker, value: Any, key: str) -> float:
    x = chk.number(value, key)
    if not 0.0 < x < 1.0:
        raise chk.fail(key, f"{x!r} is out of range: a probability must be strictly between 0 and 1")
    return x


def _items(chk: _Checker, raw: list[Mapping[str, Any]], skill_ids: tuple[str, ...]) -> tuple[Item, ...]:
    known = set(skill_ids)
    first_at: dict[str, int] = {}
    items = []
    for k, it in enumerate(raw):
        where = f"items[{k}]"
        chk.no_unknown_keys(it, ITEM_KEYS, where)
        iid = chk.new_id(it, "item", k, first_at)

        if "skills" not in it:
            raise chk.fail(f"{where}.skills", f"missing: item {iid!r} must exercise at least one skill")
        skills = chk.id_list(it["skills"], f"{where}.skills", "skill")
        if not skills:
            raise chk.fail(f"{where}.skills", f"empty: item {iid!r} must exercise at least one skill")
        for j, sid in enumerate(skills):
            if sid not in known:
                raise chk.fail(f"{where}.skills[{j}]", _unknown("skill", sid, skill_ids))
            if sid in skills[:j]:
                raise chk.fail(f"{where}.skills[{j}]", f"skill {sid!r} is listed twice")

        difficulty = chk.in_range(it.get("difficulty", 0.0), f"{where}.difficulty", *DIFFICULTY_RANGE,
                                  "difficulty (IRT b, logit scale)")
        discrimination = chk.in_range(it.get("discrimination", 1.0), f"{where}.discrimination", *DISCRIMINATION_RANGE,
                                      "discrimination (IRT a)")
        guess = _probability(chk, it["guess"], f"{where}.guess") if "guess" in it else None
        slip = _probability(chk, it["slip"], f"{where}.slip") if "slip" in it else None
        if guess is not None and slip is not None and not guess + slip < 1.0:
            raise chk.fail(where, f"guess + slip = {guess!r} + {slip!r} must be < 1 "
                                  "(otherwise a learner who knows the skill is no likelier to answer correctly)")

        kind_raw = it.get("kind", ItemKind.PRACTICE.label)
        if not isinstance(kind_raw, str) or kind_raw.strip().lower().replace(" ", "_").replace("-", "_") not in KIND_NAMES:
            raise chk.fail(f"{where}.kind", f"unknown kind {kind_raw!r}; expected one of {list(KIND_NAMES)}")
        kind = ItemKind.from_name(kind_raw.strip())

        duration = chk.number(it.get("duration", DEFAULT_DURATION), f"{where}.duration")
        if not duration > 0:
            raise chk.fail(f"{where}.duration", f"{duration!r} is not positive: duration is the expected seconds on the item")

        items.append(Item(id=iid, skills=tuple(skills), difficulty=difficulty, discrimination=discrimination,
                          guess=guess, slip=slip, kind=kind, duration=duration))
    return tuple(items)


def _order(chk: _Checker, value: Any, item_ids: tuple[str, ...]) -> tuple[str, ...]:
    ids = chk.id_list(value, "order", "item")
    if not ids:
        raise chk.fail("order", "empty: list every item id once, or leave 'order' out to derive it from the prerequisites")
    known = set(item_ids)
    first_at: dict[str, int] = {}
    for k, iid in enumerate(ids):
        if iid not in known:
            raise chk.fail(f"order[{k}]", _unknown("item", iid, item_ids))
        if iid in first_at:
            raise chk.fail(f"order[{k}]", f"item {iid!r} is listed twice (also at order[{first_at[iid]}])")
        first_at[iid] = k
    missing = [i for i in item_ids if i not in first_at]
    if missing:
        raise chk.fail("order", f"missing item(s) {_listing(repr(m) for m in missing)}: 'order' must list every "
                                "item exactly once (or leave it out to derive it from the prerequisites)")
    return tuple(ids)


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Curriculum:
    """A validated :class:`Curriculum` from a dict in the TOML schema (see the module docstring).

    Raises :class:`CurriculumError` naming ``source``, the key and the problem.
    """
    chk = _Checker(source)
    data = chk.table(data, "")
    chk.no_unknown_keys(data, TOP_KEYS, "")
    if "name" not in data:
        raise chk.fail("name", "missing: a curriculum needs a name (a non-empty string)")
    name = chk.string(data["name"], "name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise chk.fail("description", f"expected a string, got {type(description).__name__} {description!r}")
    skills = _skills(chk, chk.array_of_tables(data, "skills"))
    items = _items(chk, chk.array_of_tables(data, "items"), tuple(s.id for s in skills))
    order = _order(chk, data["order"], tuple(i.id for i in items)) if "order" in data else ()
    return Curriculum(name=name, skills=skills, items=items, order=order, description=description, source=source)


def load_curriculum(path: str | os.PathLike[str]) -> Curriculum:
    """A validated :class:`Curriculum` from a TOML file; every problem is a :class:`CurriculumError`."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CurriculumError(source, "", "curriculum file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CurriculumError(source, "", f"cannot read the curriculum file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CurriculumError(source, "", f"not valid TOML: {exc}") from None
    return from_dict(data, source=source)
