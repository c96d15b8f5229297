"""Readers for the public log formats (pedagogym.fitting.formats): detection from the header,
the mapping of each layout onto pedagogym's log, and bad rows reported by file and line.

The files under tests/data/logs/ are small hand-written files in each dataset's real column
layout (ASSISTments 2009 skill builder, Duolingo HLR (Settles & Meeder 2016), the FSRS
optimizer's revlog.csv, EdNet KT1 user files + questions.csv); the values are made up.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pedagogym.fitting import LogError, concat_logs, read_log
from pedagogym.fitting import formats

DATA = Path(__file__).parent / "data" / "logs"


def _edit(tmp_path: Path, name: str, line: int, new: str) -> Path:
    """A copy of DATA/name with (1-based) ``line`` replaced by ``new``."""
    lines = (DATA / name).read_text().splitlines()
    lines[line - 1] = new
    out = tmp_path / Path(name).name
    out.write_text("\n".join(lines) + "\n")
    return out


def _rows(log):
    """(raw learner index order is pseudonymised) -> per-row (item, skills, correct) in log order."""
    return [(log.item_ids[i], frozenset(log.skill_ids[s] for s in np.flatnonzero(log.q_matrix[i])), int(c))
            for i, c in zip(log.item, log.correct)]


@pytest.mark.parametrize("name, fmt", [("pybkt_skill_builder.csv", "pybkt"), ("duolingo_hlr.csv", "duolingo"),
                                       ("anki_revlog.csv", "anki"), ("ednet/u1.csv", "ednet")])
def test_auto_detects_each_format_from_the_header(name, fmt):
    assert formats.detect(formats.header(DATA / name)) == fmt


def test_unknown_header_names_the_columns_found(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("student,question,score\na,b,1\n")
    with pytest.raises(LogError, match=r"no known log format has these columns: found \['student', 'question', "
                                       r"'score'\].*pybkt: user_id, skill_name, correct"):
        read_log(p)


def test_a_wrong_format_choice_names_the_columns_found():
    with pytest.raises(LogError, match=r"not in the duolingo format .*missing column\(s\) \['p_recall'.*found \['card_id'"):
        read_log(DATA / "anki_revlog.csv", format="duolingo")


def test_pybkt_skill_builder():
    log = read_log(DATA / "pybkt_skill_builder.csv", salt="s")
    assert log.n_learners == 2 and log.n_interactions == 6
    assert log.skill_ids == ("Box_and_Whisker", "Circle_Graph")  # loader-safe ids
    assert log.skill_names == ("Box and Whisker", "Circle Graph")  # the names as written
    assert set(log.item_ids) == {"51424", "51435", "51444", "51395", "51481", "51457"}  # problem_id
    assert sorted(log.correct.tolist()) == [0, 0, 1, 1, 1, 1]
    assert np.all(np.diff(log.timestamp[log.learner == log.learner[0]]) > 0)  # order_id is the clock


def test_pybkt_minimal_columns_use_row_order(tmp_path):
    p = tmp_path / "glops.csv"
    p.write_text("user_id,skill_name,correct\n7,1,0\n7,1,1\n8,1,1\n")
    log = read_log(p, salt="s")
    assert log.item_ids == ("1",) and log.n_learners == 2 and log.correct.tolist() == [0, 1, 1]
    assert any("row order" in n for n in log.notes)


def test_pybkt_bad_rows_by_file_and_line(tmp_path):
    lines = (DATA / "pybkt_skill_builder.csv").read_text().splitlines()
    lines[2] = lines[2].replace(",1,1,1,4922,", ",1,0.5,1,4922,")  # correct = 0.5 on line 3
    lines[4] = "x" + lines[4]  # order_id 'x35450295' on line 5
    p = tmp_path / "sb.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogError) as exc:
        read_log(p)
    msg = str(exc.value)
    assert "2 bad row(s)" in msg
    assert f"{p}:3: correct must be 0 or 1, got '0.5'" in msg
    assert f"{p}:5: order_id must be an integer >= 0, got 'x35450295'" in msg
    assert [ln for ln, _ in exc.value.problems] == [3, 5]


def test_duolingo_one_response_per_row():
    log = read_log(DATA / "duolingo_hlr.csv", salt="s")
    assert log.n_learners == 2 and log.n_interactions == 5 and log.n_skills == 5
    by_item = {log.item_ids[i]: int(c) for i, c in zip(log.item, log.correct)}
    assert by_item["7dfd7086f3671685e2cf1c1da72796d7"] == 0  # 1 of 2 right in the session: not all recalled
    assert by_item["76390c1350a8dac31186187e2fe1e178"] == 1
    assert log.timestamp.min() == 1362076081


@pytest.mark.parametrize("line, new, reason", [
    (3, "0.5,1362076081,27649635,u:FO,de,en,7dfd,die,4,4,2,3", "session_correct must be an integer in [0, session_seen]"),
    (4, "0.7,1362076081,27649635,u:FO,de,en,3a,mann,5,4,1,1", "p_recall '0.7' is not session_correct / session_seen"),
    (2, "1.0,yesterday,27649635,u:FO,de,en,76,lernt,6,4,2,2", "timestamp must be unix seconds, got 'yesterday'"),
])
def test_duolingo_bad_rows(tmp_path, line, new, reason):
    p = _edit(tmp_path, "duolingo_hlr.csv", line, new)
    with pytest.raises(LogError, match=f"{p}:{line}: " + reason.replace("[", r"\[").replace("]", r"\]")):
        read_log(p)


def test_anki_revlog(tmp_path):
    d = tmp_path / "users"
    d.mkdir()
    shutil.copy(DATA / "anki_revlog.csv", d / "user1.csv")
    shutil.copy(DATA / "anki_revlog.csv", d / "user2.csv")
    log = read_log(d, salt="s")  # a directory: one learner per file
    assert log.n_learners == 2 and log.n_interactions == 10  # the manual row (rating 0, state 4) skipped in each
    assert any("2 manual rescheduling row(s)" in n for n in log.notes)
    first = log.learner == 0
    assert log.rating[first].tolist() == [3, 2, 3, 4, 1]  # time order across the two cards
    assert log.correct[first].tolist() == [1, 1, 1, 1, 0]
    assert log.response_time[first][0] == pytest.approx(8.25) and np.isnan(log.response_time[first][3])
    assert log.timestamp[first][0] == pytest.approx(1681571392.001)


def test_anki_bad_rows(tmp_path):
    p = _edit(tmp_path, "anki_revlog.csv", 3, "1681571392001,1681657851312,7,1,4821")
    with pytest.raises(LogError, match=f"{p}:3: review_rating must be 1-4 \\(0 = manual\\), got '7'"):
        read_log(p)


def test_ednet_kt1_with_questions():
    log = read_log(DATA / "ednet", salt="s")
    assert log.n_learners == 2 and log.n_interactions == 5
    rows = _rows(log)
    assert ("q1", frozenset({"tag:1", "tag:2", "tag:179"}), 1) in rows
    assert ("q2", frozenset({"tag:15", "tag:2", "tag:182"}), 0) in rows  # u1 answered c, the key is a
    assert ("q3", frozenset({"tag:-1"}), 1) in rows
    assert log.response_time.max() == pytest.approx(68.0)


def test_ednet_bad_rows_and_missing_questions(tmp_path):
    d = tmp_path / "ednet"
    shutil.copytree(DATA / "ednet", d)
    (d / "u2.csv").write_text("timestamp,solving_id,question_id,user_answer,elapsed_time\n"
                              "1565332027449,1,q9,a,20000\n1565332057492,2,q1,e,13000\n")
    with pytest.raises(LogError) as exc:
        read_log(d)
    assert f"{d / 'u2.csv'}:2: question_id 'q9' is not in questions.csv" in str(exc.value)
    assert f"{d / 'u2.csv'}:3: user_answer must be a, b, c or d, got 'e'" in str(exc.value)
    (d / "questions.csv").unlink()
    with pytest.raises(LogError, match="needs exactly one questions.csv"):
        read_log(d)


def test_large_files_are_read_in_chunks(monkeypatch, tmp_path):
    monkeypatch.setattr(formats, "CHUNK_ROWS", 2)  # several chunks: ids, lines and order survive the joins
    p = tmp_path / "sb.csv"
    p.write_text("user_id,skill_name,correct\n" + "".join(f"{k % 3},s{k % 2},{k % 2}\n" for k in range(9))
                 + "5,s0,2\n")
    with pytest.raises(LogError, match=f"{p}:11: correct must be 0 or 1, got '2'"):
        read_log(p)
    p.write_text("user_id,skill_name,correct\n" + "".join(f"{k % 3},s{k % 2},{k % 2}\n" for k in range(9)))
    log = read_log(p, salt="s")
    assert log.n_interactions == 9 and log.n_learners == 3 and set(log.skill_ids) == {"s0", "s1"}
    assert sorted(log.correct.tolist()) == [0] * 5 + [1] * 4


def test_train_and_test_logs_share_items_and_skills(tmp_path):
    a = tmp_path / "train.csv"
    b = tmp_path / "test.csv"
    a.write_text("user_id,skill_name,correct\n1,s0,1\n1,s1,0\n")
    b.write_text("user_id,skill_name,correct\n1,s1,1\n2,s2,0\n")
    log, is_test = concat_logs(read_log(a, salt="k"), read_log(b, salt="k"))
    assert log.skill_ids == ("s0", "s1", "s2") and log.n_learners == 3  # learner 1 of each file kept apart
    assert is_test.tolist() == [False, True, True]
    assert [log.skill_ids[int(np.flatnonzero(log.q_matrix[i])[0])] for i in log.item] == ["s0", "s1", "s1", "s2"]
