"""Readers for the public learning-log formats, each turning its rows into pedagogym's log.

``read_log(paths, format="auto")`` picks the reader from the header (a wrong guess, or a
file no reader knows, is an error naming the columns found and what each format needs):

============= ============================================================= =====================================
format        columns (required; optional in brackets)                      mapped to
============= ============================================================= =====================================
pedagogym     learner_id, item_id, skill_id, correct, timestamp             itself (:mod:`.log`)
pybkt         user_id, skill_name, correct [order_id, problem_id,           learner, skill, correct; item =
              template_id] (pyBKT / ASSISTments skill builder)              problem_id, else template_id, else
                                                                            skill; time = order_id (rows sorted
                                                                            by it, 1 s apart), else row order
duolingo      p_recall, timestamp, delta, user_id, learning_language,       one response per row: correct = every
              ui_language, lexeme_id, lexeme_string, history_seen,          answer of the session right
              history_correct, session_seen, session_correct               (session_correct == session_seen);
              (Settles & Meeder 2016, half-life regression)                 item and skill = lexeme_id
anki          card_id, review_time (ms), review_rating [review_state,       item and skill = card; correct =
              review_duration (ms), user_id] (the FSRS optimizer's          rating >= 2; rating kept; learner =
              revlog.csv)                                                   user_id, else the file's name; rating
                                                                            0 / state 4 (manual rescheduling, not
                                                                            a review) skipped and counted
ednet         timestamp (ms), solving_id, question_id, user_answer,         learner = the file's name (u123);
              elapsed_time (ms) per learner file, plus ``questions.csv``    correct = user_answer == the
              (question_id, correct_answer, tags) (EdNet KT1)               question's correct_answer; skills =
                                                                            its tags (``tag:5;tag:7``)
============= ============================================================= =====================================

A directory given as a path stands for every ``*.csv`` / ``*.csv.gz`` in it (EdNet KT1 and
per-learner Anki exports come as one file per learner). Files are read in chunks of
:data:`CHUNK_ROWS` rows (only the columns used), so a file's text is never held whole;
the log itself is kept compactly (categorical ids, small numeric types). Every row is
validated; bad rows are reported as ``file:line: reason`` (the first 20 and a count) and
nothing is read from a file set with a bad row.
"""
from __future__ import annotations

import csv
import gzip
import io
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

import pedagogym.fitting.log as logmod
from pedagogym.fitting.log import MAX_SHOWN, REQUIRED, LineLabels, Log, LogError, from_frame

CHUNK_ROWS = 250_000
FORMAT_NAMES = ("auto", "pedagogym", "pybkt", "duolingo", "anki", "ednet")


@dataclass(frozen=True)
class Format:
    """A public log layout: the columns that identify it and a row converter.

    ``convert(chunk, ctx)`` takes a chunk (text columns) and returns a frame in pedagogym's
    columns (same rows, same order) and a list of ``(row position, reason)`` for bad rows."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    convert: Callable | None
    description: str


class _Bad:
    """Bad rows seen so far: the first ``MAX_SHOWN`` with reasons, and a count."""

    def __init__(self):
        self.shown: list[tuple[str, int, str]] = []
        self.count = 0

    def add(self, file: str, lines: np.ndarray, problems: list[tuple[int, str]]) -> None:
        for pos, why in problems:
            self.count += 1
            if len(self.shown) < MAX_SHOWN:
                self.shown.append((file, int(lines[pos]), why))

    def raise_if_any(self, source: str) -> None:
        if not self.count:
            return
        text = "\n".join(f"  {f}:{ln}: {why}" for f, ln, why in self.shown)
        more = f"\n  ... and {self.count - MAX_SHOWN} more bad row(s)" if self.count > MAX_SHOWN else ""
        raise LogError(source, f"{self.count} bad row(s); nothing was read (fix or remove them):\n{text}{more}",
                       [(ln, why) for _, ln, why in self.shown])


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s.str.strip(), errors="coerce").to_numpy(dtype=float)


def _is_int(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x) & (np.floor(x) == x)


def _problems(checks: list[tuple[np.ndarray, Callable[[int], str]]], n: int) -> list[tuple[int, str]]:
    reasons: dict[int, list[str]] = {}
    for mask, why in checks:
        for k in np.flatnonzero(mask):
            reasons.setdefault(int(k), []).append(why(int(k)))
    return [(k, "; ".join(reasons[k])) for k in sorted(reasons)]


def _show(v) -> str:
    return logmod._show(v)


# ---- converters -----------------------------------------------------------------------
def _pybkt(chunk: pd.DataFrame, ctx: dict):
    n = len(chunk)
    corr = _num(chunk["correct"])
    checks = [(~np.isin(corr, (0.0, 1.0)), lambda k: f"correct must be 0 or 1, got {_show(chunk['correct'].iat[k])}")]
    if "order_id" in chunk:
        order = _num(chunk["order_id"])
        checks.append((~(_is_int(order) & (order >= 0)),
                       lambda k: f"order_id must be an integer >= 0, got {_show(chunk['order_id'].iat[k])}"))
        ts = order
    else:
        ts = ctx["row"] + np.arange(n, dtype=float)  # row order, 1 s apart
    ctx["row"] = ctx.get("row", 0) + n
    item_col = next((c for c in ("problem_id", "template_id") if c in chunk), "skill_name")
    out = pd.DataFrame({"learner_id": chunk["user_id"], "item_id": chunk[item_col], "skill_id": chunk["skill_name"],
                        "correct": np.where(np.isin(corr, (0.0, 1.0)), corr, 0).astype(np.int8), "timestamp": np.nan_to_num(ts)})
    return out, _problems(checks, n)


def _duolingo(chunk: pd.DataFrame, ctx: dict):
    n = len(chunk)
    ts, seen, right, p = (_num(chunk[c]) for c in ("timestamp", "session_seen", "session_correct", "p_recall"))
    checks = [
        (~(_is_int(ts) & (ts >= 0) & (ts < logmod.MAX_UNIX_SECONDS)),
         lambda k: f"timestamp must be unix seconds, got {_show(chunk['timestamp'].iat[k])}"),
        (~(_is_int(seen) & (seen >= 1)),
         lambda k: f"session_seen must be an integer >= 1, got {_show(chunk['session_seen'].iat[k])}"),
        (~(_is_int(right) & (right >= 0) & (right <= np.nan_to_num(seen, nan=-1))),
         lambda k: f"session_correct must be an integer in [0, session_seen], got {_show(chunk['session_correct'].iat[k])}"),
        (~(np.abs(p - right / np.where(seen > 0, seen, np.nan)) <= 1e-3),
         lambda k: f"p_recall {_show(chunk['p_recall'].iat[k])} is not session_correct / session_seen"),
    ]
    out = pd.DataFrame({"learner_id": chunk["user_id"], "item_id": chunk["lexeme_id"], "skill_id": chunk["lexeme_id"],
                        "correct": (right == seen).astype(np.int8), "timestamp": np.nan_to_num(ts)})
    return out, _problems(checks, n)


def _anki(chunk: pd.DataFrame, ctx: dict):
    n = len(chunk)
    t, r = _num(chunk["review_time"]), _num(chunk["review_rating"])
    state = _num(chunk["review_state"]) if "review_state" in chunk else np.zeros(n)
    manual = (r == 0) | (state == 4)
    checks = [
        (~(_is_int(t) & (t >= 0) & (t / 1000.0 < logmod.MAX_UNIX_SECONDS)),
         lambda k: f"review_time must be unix milliseconds, got {_show(chunk['review_time'].iat[k])}"),
        (~np.isin(r, (0.0, 1.0, 2.0, 3.0, 4.0)),
         lambda k: f"review_rating must be 1-4 (0 = manual), got {_show(chunk['review_rating'].iat[k])}"),
    ]
    if "review_state" in chunk:
        checks.append((~np.isin(state, (0.0, 1.0, 2.0, 3.0, 4.0)),
                       lambda k: f"review_state must be 0-4, got {_show(chunk['review_state'].iat[k])}"))
    out = pd.DataFrame({"learner_id": chunk["user_id"] if "user_id" in chunk else ctx["file_stem"],
                        "item_id": chunk["card_id"], "skill_id": chunk["card_id"],
                        "correct": (r >= 2).astype(np.int8), "timestamp": np.nan_to_num(t) / 1000.0,
                        "rating": np.where(np.isin(r, (1, 2, 3, 4)), r, 0).astype(np.int8)})
    if "review_duration" in chunk:
        d = _num(chunk["review_duration"])
        given = (chunk["review_duration"].str.strip() != "").to_numpy()
        checks.append((given & ~(np.isfinite(d) & (d >= 0)),
                       lambda k: f"review_duration must be milliseconds >= 0, got {_show(chunk['review_duration'].iat[k])}"))
        out["response_time"] = np.where(given, d / 1000.0, np.nan).astype(np.float32)
    out["_skip"] = manual
    return out, _problems(checks, n)


def _ednet(chunk: pd.DataFrame, ctx: dict):
    n = len(chunk)
    t, el = _num(chunk["timestamp"]), _num(chunk["elapsed_time"])
    answers, tags = ctx["questions"]
    q = chunk["question_id"].str.strip()
    key = answers.reindex(q.to_numpy())
    known = key.notna().to_numpy()
    ua = chunk["user_answer"].str.strip().str.lower()
    checks = [
        (~(_is_int(t) & (t >= 0) & (t / 1000.0 < logmod.MAX_UNIX_SECONDS)),
         lambda k: f"timestamp must be unix milliseconds, got {_show(chunk['timestamp'].iat[k])}"),
        (~known, lambda k: f"question_id {_show(q.iat[k])} is not in questions.csv"),
        (~ua.isin(("a", "b", "c", "d")).to_numpy(),
         lambda k: f"user_answer must be a, b, c or d, got {_show(chunk['user_answer'].iat[k])}"),
        (~(np.isfinite(el) & (el >= 0)),
         lambda k: f"elapsed_time must be milliseconds >= 0, got {_show(chunk['elapsed_time'].iat[k])}"),
    ]
    out = pd.DataFrame({"learner_id": ctx["file_stem"], "item_id": q,
                        "skill_id": tags.reindex(q.to_numpy()).fillna("").to_numpy(),
                        "correct": (ua.to_numpy() == key.fillna("").to_numpy()).astype(np.int8),
                        "timestamp": np.nan_to_num(t) / 1000.0,
                        "response_time": (np.nan_to_num(el) / 1000.0).astype(np.float32)})
    return out, _problems(checks, n)


FORMATS: dict[str, Format] = {
    "pedagogym": Format("pedagogym", REQUIRED, logmod.OPTIONAL, None, "pedagogym's own columns"),
    "pybkt": Format("pybkt", ("user_id", "skill_name", "correct"), ("order_id", "problem_id", "template_id"), _pybkt,
                    "pyBKT / ASSISTments skill builder"),
    "duolingo": Format("duolingo", ("p_recall", "timestamp", "delta", "user_id", "learning_language", "ui_language",
                                    "lexeme_id", "lexeme_string", "history_seen", "history_correct", "session_seen",
                                    "session_correct"), (), _duolingo, "Duolingo half-life regression (Settles & Meeder 2016)"),
    "anki": Format("anki", ("card_id", "review_time", "review_rating"), ("review_state", "review_duration", "user_id"),
                   _anki, "Anki / FSRS optimizer revlog"),
    "ednet": Format("ednet", ("timestamp", "solving_id", "question_id", "user_answer", "elapsed_time"), (), _ednet,
                    "EdNet KT1 (per-learner files + questions.csv)"),
}
EDNET_QUESTIONS = ("question_id", "correct_answer", "tags")
DETECT_ORDER = ("pedagogym", "duolingo", "ednet", "anki", "pybkt")  # most specific first
_USED = {"duolingo": ("timestamp", "user_id", "lexeme_id", "session_seen", "session_correct", "p_recall")}


# ---- files ------------------------------------------------------------------------------
def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def header(path: Path) -> list[str]:
    """The column names on a CSV file's first line (stripped)."""
    if not path.exists():
        raise LogError(str(path), "log file not found")
    try:
        with _open_text(path) as fh:
            first = fh.readline()
    except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as exc:
        raise LogError(str(path), f"cannot read the header: {type(exc).__name__}: {exc}") from None
    if not first.strip():
        raise LogError(str(path), "the file is empty (expected a header line)")
    return [c.strip() for c in next(csv.reader([first]))]


def detect(columns: list[str], path: str = "<file>") -> str:
    """The format whose required columns the header has (the most specific first)."""
    have = set(columns)
    for name in DETECT_ORDER:
        if set(FORMATS[name].required) <= have:
            return name
    overlap = {name: len(set(FORMATS[name].required) & have) for name in DETECT_ORDER}
    best = max(DETECT_ORDER, key=lambda n: overlap[n])
    if overlap[best] >= 2 and list(overlap.values()).count(overlap[best]) == 1:
        return best  # nearly this format: its reader names the missing columns
    need = "; ".join(f"{n}: {', '.join(FORMATS[n].required)}" for n in DETECT_ORDER)
    raise LogError(path, f"no known log format has these columns: found {columns}; the formats need {need} "
                         "(or pass --format)")


def _expand(paths) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.name.lower().endswith((".csv", ".csv.gz")))
            if not files:
                raise LogError(str(p), "the directory holds no .csv or .csv.gz file")
            out += files
        else:
            out.append(p)
    return out


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".csv.gz", ".csv"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _chunks(path: Path, usecols: list[str]):
    """(first line number, chunk of text columns) over the file."""
    try:
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, usecols=usecols,
                             chunksize=CHUNK_ROWS)
        line = 2
        for chunk in reader:
            yield line, chunk
            line += len(chunk)
    except pd.errors.EmptyDataError:
        raise LogError(str(path), "the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LogError(str(path), f"not a readable CSV file: {exc}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LogError(str(path), f"the compressed file is truncated or corrupt ({type(exc).__name__}: "
                                  f"{exc or 'unexpected end of data'}); re-download or re-compress it") from None


def _ednet_questions(path: Path) -> tuple[pd.Series, pd.Series]:
    """(correct answer, skills) per question id, from EdNet's questions.csv."""
    bad = _Bad()
    answers, tags = [], []
    for line, ch in _chunks(path, list(EDNET_QUESTIONS)):
        lines = line + np.arange(len(ch))
        a = ch["correct_answer"].str.strip().str.lower()
        t = ch["tags"].str.strip()
        problems = _problems([
            ((ch["question_id"].str.strip() == "").to_numpy(), lambda k: "empty question_id"),
            (~a.isin(("a", "b", "c", "d")).to_numpy(), lambda k: f"correct_answer must be a-d, got {_show(ch['correct_answer'].iat[k])}"),
            ((t == "").to_numpy(), lambda k: "empty tags"),
        ], len(ch))
        bad.add(str(path), lines, problems)
        q = ch["question_id"].str.strip().to_numpy()
        answers.append(pd.Series(a.to_numpy(), index=q))
        tags.append(pd.Series([";".join("tag:" + x.strip() for x in s.split(";")) for s in t], index=q))
    bad.raise_if_any(str(path))
    a, t = pd.concat(answers), pd.concat(tags)
    return a[~a.index.duplicated()], t[~t.index.duplicated()]


def read_log(path, salt: str | bytes | None = None, format: str = "auto") -> Log:
    """Read, validate and pseudonymise a log in any supported format (see the module doc).

    ``path``: a file, a directory (every CSV in it) or a list of them, read as one log."""
    if format not in FORMAT_NAMES:
        raise LogError("<format>", f"unknown format {format!r}; known: {', '.join(FORMAT_NAMES)}")
    paths = _expand(path if isinstance(path, (list, tuple)) else [path])
    if not paths:
        raise LogError("<no files>", "no log file given")
    source = ", ".join(str(p) for p in paths) if len(paths) <= 3 else f"{paths[0]} and {len(paths) - 1} more files"
    csvs = [p for p in paths if p.name.lower().endswith((".csv", ".csv.gz"))]
    if len(csvs) < len(paths):  # Parquet: pedagogym's columns only
        if format not in ("auto", "pedagogym"):
            raise LogError(source, f"the {format} reader takes CSV files (.csv, .csv.gz)")
        return logmod.read_log(paths, salt=salt)
    headers = {p: header(p) for p in paths}
    questions = [p for p in paths if set(EDNET_QUESTIONS) <= set(headers[p]) and "user_answer" not in headers[p]]
    data = [p for p in paths if p not in questions]
    if not data:
        raise LogError(source, "no log file given (only EdNet questions.csv)")
    names = {p: (format if format != "auto" else detect(headers[p], str(p))) for p in data}
    kinds = set(names.values())
    if len(kinds) > 1:
        raise LogError(source, "the files are in different formats: " + "; ".join(f"{p}: {n}" for p, n in names.items()))
    fmt = FORMATS[kinds.pop()]
    if fmt.name == "pedagogym":
        return logmod.read_log(data, salt=salt)  # names its own missing columns
    for p in data:
        missing = [c for c in fmt.required if c not in headers[p]]
        if missing:
            raise LogError(str(p), f"not in the {fmt.name} format ({fmt.description}): missing column(s) {missing}; "
                                   f"found {headers[p]}; {fmt.name} needs {list(fmt.required)}")
    if fmt.name == "pedagogym":
        return logmod.read_log(data, salt=salt)
    ctx: dict = {"row": 0}
    if fmt.name == "ednet":
        if len(questions) != 1:
            raise LogError(source, "EdNet KT1 needs exactly one questions.csv (question_id, correct_answer, tags) "
                                   f"among the files; found {len(questions)}")
        ctx["questions"] = _ednet_questions(questions[0])
    bad = _Bad()
    parts: list[pd.DataFrame] = []
    file_idx: list[np.ndarray] = []
    line_no: list[np.ndarray] = []
    skipped = 0
    for k, p in enumerate(data):
        usecols = list(_USED.get(fmt.name, [c for c in (*fmt.required, *fmt.optional) if c in headers[p]]))
        ctx["file_stem"] = _stem(p)
        for line, chunk in _chunks(p, usecols):
            lines = line + np.arange(len(chunk))
            out, problems = fmt.convert(chunk, ctx)
            bad.add(str(p), lines, problems)
            if bad.count:
                continue  # keep validating, stop collecting
            if "_skip" in out:
                keep = ~out.pop("_skip").to_numpy()
                skipped += int((~keep).sum())
                out, lines = out[keep], lines[keep]
            parts.append(_compact(out))
            file_idx.append(np.full(len(out), k, np.int32))
            line_no.append(lines)
    bad.raise_if_any(source)
    if not parts or sum(len(x) for x in parts) == 0:
        raise LogError(source, "the log has a header but no usable rows")
    df = _concat(parts)
    fi, ln = np.concatenate(file_idx), np.concatenate(line_no)
    if len(df) > 1:  # these formats define order by their clock (pyBKT sorts by order_id; a revlog is grouped by card)
        order = np.argsort(df["timestamp"].to_numpy(), kind="stable")
        df, fi, ln = df.iloc[order].reset_index(drop=True), fi[order], ln[order]
    labels = LineLabels(tuple(str(p) for p in data), fi, ln)
    result = from_frame(df, salt=salt, source=source, line_labels=labels)
    notes = [f"read as {fmt.name} ({fmt.description})"]
    if skipped:
        notes.append(f"{skipped} manual rescheduling row(s) (rating 0 / state 4) skipped: not reviews")
    timed = fmt.name != "pybkt"
    if not timed:
        clock = "order_id" if any("order_id" in headers[p] for p in data) else "the row order"
        notes.append(f"no timestamps in this format: time is {clock} (1 s apart); sessions are not estimated, and "
                     "models of forgetting over time are not applicable")
    return replace(result, notes=tuple(notes), timed=timed)


def _compact(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("learner_id", "item_id", "skill_id"):
        df[c] = pd.Categorical(df[c].to_numpy() if not isinstance(df[c], str) else df[c])
    return df.reset_index(drop=True)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    from pandas.api.types import union_categoricals

    if len(parts) == 1:
        return parts[0]
    out = {}
    for c in parts[0].columns:
        if isinstance(parts[0][c].dtype, pd.CategoricalDtype):
            out[c] = union_categoricals([p[c] for p in parts])
        else:
            out[c] = np.concatenate([p[c].to_numpy() for p in parts])
    return pd.DataFrame(out)
