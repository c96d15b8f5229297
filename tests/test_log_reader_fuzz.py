"""Fuzz of the log readers (issue 20): whatever bytes a log file holds, ``read_log`` either
returns a validated log or raises a user error (``PedagogymError``: the CLI's one-line error,
naming the file); never another exception (a traceback). Two strategies: raw bytes, and CSV
text built from the real formats' headers with random cells, so that the readers' row checks
are reached rather than only the header detection."""
from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pedagogym.errors import PedagogymError
from pedagogym.fitting.formats import read_log

HEADERS = [
    ["learner_id", "item_id", "skill_id", "correct", "timestamp"],                       # pedagogym
    ["user_id", "skill_name", "correct"],                                                # pyBKT / ASSISTments
    ["user_id", "skill_name", "correct", "order_id", "problem_id"],
    ["card_id", "review_time", "review_rating", "review_state", "review_duration"],      # Anki / FSRS revlog
    ["p_recall", "timestamp", "delta", "user_id", "learning_language", "ui_language",    # Duolingo HLR
     "lexeme_id", "lexeme_string", "history_seen", "history_correct", "session_seen", "session_correct"],
]
CELLS = st.one_of(st.integers(-3, 3).map(str), st.sampled_from(["", "nan", "1e400", "-0", "0.5", "2026-12-03T10:00:00Z",
                                                              "=cmd", "a;b", "x y", "\u00e9", "99999999999999999999"]),
                  st.text(max_size=6))


def _read(tmp_path, data: bytes, name: str = "log.csv") -> None:
    path = tmp_path / name
    path.write_bytes(data)
    try:
        log = read_log(path, salt="fuzz")
    except PedagogymError:
        return
    assert log.n_interactions >= 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_raw_bytes_give_a_log_or_a_user_error(tmp_path, data):
    _read(tmp_path, data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(HEADERS).flatmap(
    lambda h: st.tuples(st.just(h), st.lists(st.lists(CELLS, min_size=len(h), max_size=len(h)), min_size=1, max_size=6))))
def test_csv_rows_of_every_format_give_a_log_or_a_user_error(tmp_path, case):
    header, rows = case
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    _read(tmp_path, buf.getvalue().encode("utf-8", "surrogatepass"))
