"""Learning logs: the file format, validation, and pseudonymisation on ingestion.

Format (CSV; Parquet too when ``pyarrow`` is importable), one row per response:

============== ========== ===================================================================
column         required   meaning
============== ========== ===================================================================
learner_id     yes        the learner (pseudonymised on reading; the raw id is never kept)
item_id        yes        the item answered
skill_id       yes        the skill it exercises; several separated by ``;``
correct        yes        0 or 1
timestamp      yes        ISO 8601 (a time zone or UTC) or unix seconds
response_time  no         seconds (>= 0); blank = not recorded
rating         no         1-4 (FSRS: again, hard, good, easy); blank = not recorded
group          no         the learner's subgroup (one per learner)
============== ========== ===================================================================

:func:`read_log` validates every row and raises :class:`LogError` listing the bad rows by
line number with the reason (the first 20 and a count); it never drops or guesses a row.
Learner ids become salted hashes (blake2b, keyed by a salt given by the caller or drawn at
random per run); the salt is never written anywhere, so pseudonyms from a random-salt run
cannot be linked back to the raw ids.
"""
from __future__ import annotations

import gzip
import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pedagogym.errors import PedagogymError

REQUIRED = ("learner_id", "item_id", "skill_id", "correct", "timestamp")
OPTIONAL = ("response_time", "rating", "group")
SKILL_SEP = ";"
MAX_SHOWN = 20
_WS = re.compile(r"\s+")
MAX_UNIX_SECONDS = 32503680000.0  # year 3000: larger numbers are not unix seconds (milliseconds?)


class LogError(PedagogymError):
    """A log file that cannot be used as it is. ``problems`` lists ``(line, reason)``;
    line numbers are the file's (the header is line 1, the first data row line 2)."""

    def __init__(self, source: str, message: str, problems: list[tuple[int, str]] | None = None):
        self.source = source
        self.problems = list(problems or [])
        super().__init__(f"{source}: {message}")


def _show(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, eq=False)
class Log:
    """A validated learning log, sorted by learner then time (stable for ties).

    ``N`` interactions, ``L`` learners, ``I`` items, ``S`` skills, ``G`` groups.

    learner:       int32[N] index into ``learner_ids``.
    item:          int32[N] index into ``item_ids``.
    correct:       int8[N] 0/1.
    timestamp:     float64[N] unix seconds.
    response_time: float32[N] seconds, NaN = not recorded; None if the column is absent.
    rating:        int8[N] 1-4, 0 = not recorded; None if the column is absent.
    learner_ids:   tuple[str] of L pseudonyms (salted hashes, never raw ids).
    item_ids, skill_ids: tuple[str] in order of first appearance.
    q_matrix:      bool[I, S] the skills of each item.
    learner_group: int32[L] index into ``group_names``; None without a group column.
    """

    learner: np.ndarray
    item: np.ndarray
    correct: np.ndarray
    timestamp: np.ndarray
    response_time: np.ndarray | None
    rating: np.ndarray | None
    learner_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    skill_ids: tuple[str, ...]
    q_matrix: np.ndarray
    learner_group: np.ndarray | None
    group_names: tuple[str, ...]
    source: str = "<memory>"
    skill_names: tuple[str, ...] = ()  # the skills as written in the log (ids are made loader-safe)
    notes: tuple[str, ...] = ()  # how the reader read it (format, skipped rows)
    timed: bool = True  # False: the format has no clock (pyBKT's): time is the row order

    # sizes, derived (not fields)
    n_interactions = property(lambda self: int(self.learner.shape[0]), doc="responses (rows) in the log")
    n_learners = property(lambda self: len(self.learner_ids), doc="distinct learners")
    n_items = property(lambda self: len(self.item_ids), doc="distinct items")
    n_skills = property(lambda self: len(self.skill_ids), doc="distinct skills (the columns of ``q_matrix``)")
    has_groups = property(lambda self: self.learner_group is not None, doc="learners carry a group label")

    def learner_counts(self) -> np.ndarray:
        """int64[L] interactions per learner."""
        return np.bincount(self.learner, minlength=self.n_learners)

    def select_learners(self, keep: np.ndarray) -> "Log":
        """The log of the learners where ``keep`` (bool[L]) is true; item/skill vocabularies kept."""
        keep = np.asarray(keep, bool)
        rows = keep[self.learner]
        new_index = np.cumsum(keep) - 1
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return replace(
            self,
            learner=new_index[self.learner[rows]].astype(np.int32),
            item=self.item[rows], correct=self.correct[rows], timestamp=self.timestamp[rows],
            response_time=pick(self.response_time), rating=pick(self.rating),
            learner_ids=tuple(np.asarray(self.learner_ids, dtype=object)[keep]),
            learner_group=None if self.learner_group is None else self.learner_group[keep],
        )

    def curriculum(self, name: str = "fitted"):
        """A :class:`~pedagogym.curriculum.spec.Curriculum` with the log's skills and items
        (no prerequisites, average items: difficulty 0, discrimination 1)."""
        from pedagogym.curriculum.spec import Curriculum, Item, Skill

        names = self.skill_names if len(self.skill_names) == self.n_skills else self.skill_ids
        skills = tuple(Skill(s, n) for s, n in zip(self.skill_ids, names))
        items = tuple(Item(i, tuple(self.skill_ids[s] for s in np.flatnonzero(self.q_matrix[k])))
                      for k, i in enumerate(self.item_ids))
        return Curriculum(name, skills, items, description="skills and items of a learning log")

    def to_frame(self) -> pd.DataFrame:
        """The log in the file format, with pseudonymised learner ids."""
        skills = [SKILL_SEP.join(self.skill_ids[s] for s in np.flatnonzero(row)) for row in self.q_matrix]
        df = pd.DataFrame({
            "learner_id": np.asarray(self.learner_ids, dtype=object)[self.learner],
            "item_id": np.asarray(self.item_ids, dtype=object)[self.item],
            "skill_id": np.asarray(skills, dtype=object)[self.item],
            "correct": self.correct.astype(int),
            "timestamp": self.timestamp,
        })
        if self.response_time is not None:
            df["response_time"] = self.response_time
        if self.rating is not None:
            df["rating"] = self.rating
        if self.learner_group is not None:
            df["group"] = np.asarray(self.group_names, dtype=object)[self.learner_group[self.learner]]
        return df


# ---- pseudonymisation -------------------------------------------------------------------
def salt_bytes(salt: str | bytes | None) -> bytes:
    """The key for the learner-id hash: the caller's salt, or 32 random bytes (per run)."""
    if salt is None:
        return secrets.token_bytes(32)
    raw = salt.encode() if isinstance(salt, str) else bytes(salt)
    if not raw:
        raise ValueError("salt must not be empty (leave it out for a random per-run salt)")
    return raw if len(raw) <= 64 else hashlib.blake2b(raw).digest()


def pseudonymise(ids, salt: bytes) -> list[str]:
    """Keyed blake2b of each id: ``'L' + 16 hex digits``. Same salt and id, same pseudonym."""
    return ["L" + hashlib.blake2b(str(i).encode(), key=salt, digest_size=8).hexdigest() for i in ids]


# ---- reading and validating --------------------------------------------------------------
def read_log(path: str | Path | list, salt: str | bytes | None = None) -> Log:
    """Read, validate and pseudonymise a log (``.csv``, ``.csv.gz`` or ``.parquet``).

    A list of paths is read as one log, in the order given (one learner may span files; the
    time-order rule runs across them; bad rows are named ``file:line``). Raises
    :class:`LogError` naming the file, and for bad rows their line numbers and reasons.
    """
    paths = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    if not paths:
        raise LogError("<no files>", "no log file given")
    frames = []
    for p in paths:
        frames.append(_read_table(p))
    source = ", ".join(str(p) for p in paths)
    if len(frames) == 1:
        return from_frame(frames[0], salt=salt, source=source)
    cols = [set(f.columns) for f in frames]
    if any(c != cols[0] for c in cols):
        raise LogError(source, "the files have different columns: " + "; ".join(
            f"{p}: {sorted(c)}" for p, c in zip(paths, cols)))
    # line numbers: keep each file's own (reported as file:line)
    where = LineLabels(tuple(str(p) for p in paths),
                       np.concatenate([np.full(len(f), k, np.int16) for k, f in enumerate(frames)]),
                       np.concatenate([np.arange(2, len(f) + 2) for f in frames]))
    df = pd.concat(frames, ignore_index=True)
    return from_frame(df, salt=salt, source=source, line_labels=where)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise LogError(str(path), "log file not found")
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise LogError(str(path), "reading Parquet needs the optional package 'pyarrow' "
                                      "(pip install pyarrow), or convert the log to CSV") from None
        df = pd.read_parquet(path)
        out = pd.DataFrame(index=df.index)
        for col in df.columns:
            s = df[col]
            if pd.api.types.is_datetime64_any_dtype(s):
                out[col] = s  # converted to unix seconds by the timestamp rule
            else:
                out[col] = s.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else
                                 (str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v)))
        return out
    if not (name.endswith(".csv") or name.endswith(".csv.gz")):
        raise LogError(str(path), "unknown log format: expected .csv, .csv.gz or .parquet")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=False)
    except pd.errors.EmptyDataError:
        raise LogError(str(path), "the file is empty (expected a header line with columns "
                                  f"{', '.join(REQUIRED)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LogError(str(path), f"not a readable CSV file: {exc}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LogError(str(path), f"the compressed file is truncated or corrupt ({type(exc).__name__}: "
                                  f"{exc or 'unexpected end of data'}); re-download or re-compress it") from None


def from_frame(df: pd.DataFrame, salt: str | bytes | None = None, source: str = "<frame>",
               line_labels: np.ndarray | None = None) -> Log:
    """Validate a table in the log format (any dtypes) and build a :class:`Log`.

    ``line_labels`` names each row in error messages (default ``line k``, the CSV line).
    """
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise LogError(source, f"missing required column(s) {missing}; found {list(df.columns)}; "
                               f"required: {list(REQUIRED)}, optional: {list(OPTIONAL)}")
    n = len(df)
    if n == 0:
        raise LogError(source, "the log has a header but no rows")
    if line_labels is None:
        line_labels = LineLabels(("",), np.zeros(n, np.int16), np.arange(2, n + 2))
    reasons: dict[int, list[str]] = {}  # only the bad rows (a 10M-row log holds no per-row lists)
    flagged = np.zeros(n, bool)

    def flag(mask: np.ndarray, reason) -> None:
        idx = np.flatnonzero(mask)
        flagged[idx] = True
        for k in idx:
            reasons.setdefault(int(k), []).append(reason(k) if callable(reason) else reason)

    def text(col: str) -> pd.Series:
        s = df[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            return s
        if isinstance(s.dtype, pd.CategoricalDtype):  # strip each distinct value once; rows share the strings
            cats = pd.Index(s.cat.categories).astype(str).str.strip()
            codes = s.cat.codes.to_numpy()
            vals = np.asarray(list(cats) + [""], dtype=object)
            return pd.Series(vals[np.where(codes < 0, len(cats), codes)], index=s.index)
        return s.fillna("").astype(str).str.strip()

    learner = text("learner_id")
    item = text("item_id")
    skill = text("skill_id")
    flag((learner == "").to_numpy(), "empty learner_id")
    flag((item == "").to_numpy(), "empty item_id")
    sk_codes, sk_uniques = pd.factorize(skill, sort=False)  # split each distinct skill_id once
    sk_lists = [tuple(p.strip() for p in str(u).split(SKILL_SEP)) for u in sk_uniques]
    skill_lists = pd.Series(_objects(sk_lists)[sk_codes], index=df.index)
    bad_skill = np.asarray([any(p == "" for p in parts) for parts in sk_lists] + [False])[sk_codes]
    flag(bad_skill, lambda k: "empty skill_id" if skill.iat[k] == "" else f"empty skill id in skill_id {_show(skill.iat[k])}")

    # correct: exactly 0 or 1
    if pd.api.types.is_numeric_dtype(df["correct"]):  # a format reader's column: no text round trip
        corr_num = df["correct"].to_numpy(dtype=float)
        corr_raw = df["correct"]
    else:
        corr_raw = text("correct")
        corr_num = pd.to_numeric(corr_raw, errors="coerce").to_numpy(dtype=float)
    bad_corr = ~np.isin(corr_num, (0.0, 1.0))
    flag(bad_corr, lambda k: f"correct must be 0 or 1, got {_show(corr_raw.iat[k])}")

    # timestamp: unix seconds or ISO 8601
    ts = _parse_timestamps(df["timestamp"])
    ts_raw = df["timestamp"] if pd.api.types.is_numeric_dtype(df["timestamp"]) else text("timestamp")
    flag(np.isnan(ts), lambda k: ("empty timestamp" if str(ts_raw.iat[k]) == "" else
                                  f"timestamp is neither ISO 8601 nor unix seconds: {_show(ts_raw.iat[k])}"))

    response_time = rating = None
    if "response_time" in df.columns and pd.api.types.is_numeric_dtype(df["response_time"]):
        response_time = df["response_time"].to_numpy(dtype=np.float32)
    elif "response_time" in df.columns:
        rt_raw = text("response_time")
        rt = pd.to_numeric(rt_raw, errors="coerce").to_numpy(dtype=float)
        given = (rt_raw != "").to_numpy()
        flag(given & ~(np.isfinite(rt) & (rt >= 0)),
             lambda k: f"response_time must be a number of seconds >= 0, got {_show(rt_raw.iat[k])}")
        response_time = np.where(given, rt, np.nan).astype(np.float32)
    if "rating" in df.columns and pd.api.types.is_numeric_dtype(df["rating"]):
        rating = df["rating"].to_numpy(dtype=np.int8)
    elif "rating" in df.columns:
        rating_raw = text("rating")
        rnum = pd.to_numeric(rating_raw, errors="coerce").to_numpy(dtype=float)
        given = (rating_raw != "").to_numpy()
        flag(given & ~np.isin(rnum, (1.0, 2.0, 3.0, 4.0)),
             lambda k: f"rating must be 1, 2, 3 or 4, got {_show(rating_raw.iat[k])}")
        rating = np.where(given & np.isin(rnum, (1.0, 2.0, 3.0, 4.0)), rnum, 0).astype(np.int8)
    group = None
    if "group" in df.columns:
        group = text("group")
        flag((group == "").to_numpy(), "empty group (a learner's group must be given on every row)")

    # rules across rows, on rows that are fine so far
    ok = ~flagged
    lid = learner.to_numpy(dtype=object)
    # time going backwards for a learner (file order)
    valid = ok & (learner != "").to_numpy()
    if valid.any():
        sub = pd.DataFrame({"l": lid[valid], "t": ts[valid]})
        prev_max = sub.groupby("l", sort=False)["t"].cummax().groupby(sub["l"], sort=False).shift(1).to_numpy(dtype=float)
        back = np.zeros(n, bool)
        back[np.flatnonzero(valid)] = prev_max > sub["t"].to_numpy()
        flag(back, lambda k: f"time goes backwards for this learner: {_show(ts_raw.iat[k])} is before an earlier row's time")
    # one group per learner; one skill set per item
    if group is not None:
        g = group.to_numpy(dtype=object)
        first = pd.Series(g[ok]).groupby(lid[ok], sort=False).transform("first").to_numpy(dtype=object)
        differs = np.zeros(n, bool)
        differs[np.flatnonzero(ok)] = first != g[ok]
        flag(differs, lambda k: f"group {_show(g[k])} differs from this learner's earlier group")
    skill_key = np.asarray([SKILL_SEP.join(sorted(set(parts))) for parts in sk_lists] + [""], dtype=object)[sk_codes]
    iid = item.to_numpy(dtype=object)
    ok_items = ok & (item != "").to_numpy()
    if ok_items.any():
        first_sk = pd.Series(skill_key[ok_items]).groupby(iid[ok_items], sort=False).transform("first").to_numpy(dtype=object)
        differs = np.zeros(n, bool)
        differs[np.flatnonzero(ok_items)] = first_sk != skill_key[ok_items]
        flag(differs, lambda k: f"item {_show(iid[k])} has skills {_show(skill_key[k])} here but different skills on an earlier row")

    bad = sorted(reasons)
    if bad:
        problems = [(k, "; ".join(reasons[k])) for k in bad]
        shown = "\n".join(f"  {line_labels[k]}: {why}" for k, why in problems[:MAX_SHOWN])
        more = f"\n  ... and {len(bad) - MAX_SHOWN} more bad row(s)" if len(bad) > MAX_SHOWN else ""
        numbered = [(int(str(line_labels[k]).rsplit(" ", 1)[-1].rsplit(":", 1)[-1]), why) for k, why in problems]
        raise LogError(source, f"{len(bad)} bad row(s) of {n}; nothing was read (fix or remove them):\n{shown}{more}",
                       numbered)

    # ---- build the Log -----------------------------------------------------------------
    salt_key = salt_bytes(salt)
    l_codes, l_uniques = pd.factorize(learner, sort=False)
    pseudonyms = pseudonymise(l_uniques, salt_key)
    del l_uniques, lid
    i_codes, i_uniques = pd.factorize(item, sort=False)
    skill_ids: list[str] = []
    s_index: dict[str, int] = {}
    item_skill_first = pd.Series(skill_lists.to_numpy(dtype=object)).groupby(i_codes, sort=True).first()
    for parts in item_skill_first:
        for s in parts:
            if s not in s_index:
                s_index[s] = len(skill_ids)
                skill_ids.append(s)
    skill_names = tuple(skill_ids)
    skill_safe = loader_ids(skill_ids)
    q = np.zeros((len(i_uniques), len(skill_ids)), bool)
    for k, parts in zip(item_skill_first.index, item_skill_first):
        q[k, [s_index[s] for s in parts]] = True
    order = np.lexsort((np.arange(n), ts, l_codes))  # learner, then time, then file order
    learner_group = None
    group_names: tuple[str, ...] = ()
    if group is not None:
        g_codes, g_uniques = pd.factorize(group, sort=True)
        learner_group = np.zeros(len(pseudonyms), np.int32)
        learner_group[l_codes] = g_codes
        group_names = tuple(str(x) for x in g_uniques)
    take = lambda a: None if a is None else a[order]  # noqa: E731
    return Log(
        learner=l_codes[order].astype(np.int32), item=i_codes[order].astype(np.int32),
        correct=corr_num[order].astype(np.int8), timestamp=ts[order],
        response_time=take(response_time), rating=take(rating),
        learner_ids=tuple(pseudonyms), item_ids=loader_ids([str(x) for x in i_uniques]), skill_ids=skill_safe,
        q_matrix=q, learner_group=learner_group, group_names=group_names, source=source, skill_names=skill_names,
    )


def loader_ids(raw: list[str]) -> tuple[str, ...]:
    """``raw`` ids made acceptable to the curriculum loader (an id is a non-empty string
    without whitespace: :mod:`pedagogym.curriculum.loader`): each run of whitespace becomes
    ``_``; an id that then collides with an earlier one gets ``~2``, ``~3``... Ids already
    valid and distinct are unchanged."""
    out: list[str] = []
    taken: set[str] = set()
    for r in raw:
        base = _WS.sub("_", str(r).strip()) or "_"
        new, k = base, 1
        while new in taken:
            k += 1
            new = f"{base}~{k}"
        taken.add(new)
        out.append(new)
    return tuple(out)


class LineLabels:
    """Where each row came from, built lazily: ``labels[k]`` is ``file:line`` (or
    ``line N`` for a single unnamed source). Two small integer arrays instead of a string
    per row."""

    def __init__(self, files: tuple[str, ...], file_index: np.ndarray, line: np.ndarray):
        self.files, self.file_index, self.line = files, np.asarray(file_index), np.asarray(line)

    def __len__(self) -> int:
        return len(self.line)

    def __getitem__(self, k) -> str:
        f = self.files[int(self.file_index[k])]
        return f"{f}:{int(self.line[k])}" if f else f"line {int(self.line[k])}"


def _objects(values: list) -> np.ndarray:
    """A 1-d object array of ``values`` (tuples stay elements, never become a 2-d array)."""
    out = np.empty(len(values), dtype=object)
    for k, v in enumerate(values):
        out[k] = v
    return out


def _parse_timestamps(col: pd.Series) -> np.ndarray:
    """float64[N] unix seconds; NaN where the value is neither unix seconds nor ISO 8601."""
    if pd.api.types.is_datetime64_any_dtype(col):
        dt = pd.to_datetime(col, utc=True)
        return ((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(col):
        num = col.to_numpy(dtype=float)
        return np.where(np.isfinite(num) & (num >= 0) & (num < MAX_UNIX_SECONDS), num, np.nan)
    s = col.fillna("").astype(str).str.strip()
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    out = np.where(np.isfinite(num) & (num >= 0) & (num < MAX_UNIX_SECONDS), num, np.nan)
    iso = np.isnan(num) & (s != "").to_numpy()
    if iso.any():
        dt = pd.to_datetime(s[iso], format="ISO8601", utc=True, errors="coerce")
        out[iso] = ((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float, na_value=np.nan)
    return out


def concat_logs(train: Log, test: Log) -> tuple[Log, np.ndarray]:
    """One log of ``train``'s learners followed by ``test``'s (kept distinct even if a
    pseudonym repeats), with the union of their items and skills; and bool[L], True for
    the test learners. An item with different skills in the two logs is an error."""
    skill_ids = list(train.skill_ids)
    skill_names = list(train.skill_names or train.skill_ids)
    s_index = {s: k for k, s in enumerate(skill_ids)}
    for s, name in zip(test.skill_ids, test.skill_names or test.skill_ids):
        if s not in s_index:
            s_index[s] = len(skill_ids)
            skill_ids.append(s)
            skill_names.append(name)
    item_ids = list(train.item_ids)
    i_index = {i: k for k, i in enumerate(item_ids)}
    for i in test.item_ids:
        if i not in i_index:
            i_index[i] = len(item_ids)
            item_ids.append(i)
    q = np.zeros((len(item_ids), len(skill_ids)), bool)
    q[: train.n_items, : train.n_skills] = train.q_matrix
    s_map = np.asarray([s_index[s] for s in test.skill_ids], np.int64)
    i_map = np.asarray([i_index[i] for i in test.item_ids], np.int64)
    for k, row in enumerate(test.q_matrix):
        new = np.zeros(len(skill_ids), bool)
        new[s_map[row]] = True
        if i_map[k] < train.n_items and not np.array_equal(q[i_map[k]], new):
            raise LogError(f"{train.source} / {test.source}",
                           f"item {test.item_ids[k]!r} has different skills in the training and the test log")
        q[i_map[k]] = new
    groups = None
    names: tuple[str, ...] = ()
    if train.has_groups or test.has_groups:
        if not (train.has_groups and test.has_groups):
            raise LogError(f"{train.source} / {test.source}", "only one of the training and test logs has a group column")
        names = tuple(sorted(set(train.group_names) | set(test.group_names)))
        g_index = {g: k for k, g in enumerate(names)}
        groups = np.concatenate([np.asarray([g_index[train.group_names[g]] for g in train.learner_group], np.int32),
                                 np.asarray([g_index[test.group_names[g]] for g in test.learner_group], np.int32)])

    def opt(a, b, n_a, n_b, fill, dtype):
        if a is None and b is None:
            return None
        a = np.full(n_a, fill, dtype) if a is None else a
        b = np.full(n_b, fill, dtype) if b is None else b
        return np.concatenate([a, b]).astype(dtype)

    merged = Log(
        learner=np.concatenate([train.learner, test.learner + train.n_learners]).astype(np.int32),
        item=np.concatenate([train.item, i_map[test.item]]).astype(np.int32),
        correct=np.concatenate([train.correct, test.correct]), timestamp=np.concatenate([train.timestamp, test.timestamp]),
        response_time=opt(train.response_time, test.response_time, train.n_interactions, test.n_interactions, np.nan,
                          np.float32),
        rating=opt(train.rating, test.rating, train.n_interactions, test.n_interactions, 0, np.int8),
        learner_ids=train.learner_ids + test.learner_ids, item_ids=tuple(item_ids), skill_ids=tuple(skill_ids),
        q_matrix=q, learner_group=groups, group_names=names, source=f"{train.source} + test {test.source}",
        skill_names=tuple(skill_names), notes=train.notes, timed=train.timed and test.timed,
    )
    is_test = np.zeros(merged.n_learners, bool)
    is_test[train.n_learners:] = True
    return merged, is_test
