"""bench/mutation_scores.py --check: the recorded mutation scores cannot go stale unseen.

A git repository of its own, with a file of the proxy's core, its tests and the table: a row is taken as it is until
its file or its tests change after the commit that last wrote the row, and is then measured again (here a stand-in
for mutmut, which takes minutes), the check failing where the measure is not the row's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import mutation_scores
from bench.mutation_scores import Score

HEAD = "| file | killed | survived | no tests | score | target met |\n|---|---:|---:|---:|---:|---|\n"


def commit(repo: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], cwd=repo, check=True)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "otel_proxy").mkdir()
    (tmp_path / "tests" / "proxy").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "otel_proxy" / "watch.py").write_text("x = 1\n")
    (tmp_path / "otel_proxy" / "labels.py").write_text("y = 1\n")
    (tmp_path / "tests" / "proxy" / "test_watch.py").write_text("def test(): pass\n")
    (tmp_path / "docs" / "testing.md").write_text("# Testing\n\n" + HEAD + "| otel_proxy/watch.py | 90 | 10 | 0 | 90.0 % | yes |\n"
                                                 "| otel_proxy/labels.py | 8 | 2 | 0 | 80.0 % | no |\n")
    commit(tmp_path, "measured")
    monkeypatch.setattr(mutation_scores, "ROOT", tmp_path)
    monkeypatch.setattr(mutation_scores, "TABLE", tmp_path / "docs" / "testing.md")
    return tmp_path


def measured(monkeypatch, scores: dict[str, Score]) -> list[str]:
    runs: list[str] = []

    def measure(file: str) -> Score:
        runs.append(file)
        return scores[file]

    monkeypatch.setattr(mutation_scores, "measure", measure)
    return runs


def test_rows_nothing_touched_since_are_taken_as_they_are(repo, monkeypatch):
    runs = measured(monkeypatch, {})
    assert mutation_scores.check(budget_s=60) == 0 and runs == []
    (repo / "otel_proxy" / "other.py").write_text("z = 1\n")  # not a file of the table
    commit(repo, "elsewhere")
    assert mutation_scores.check(budget_s=60) == 0 and runs == []


def test_a_row_whose_file_or_tests_changed_is_measured_again_and_fails_where_it_moved(repo, monkeypatch, capsys):
    (repo / "tests" / "proxy" / "test_watch.py").write_text("def test(): assert True\n")  # uncommitted counts too
    runs = measured(monkeypatch, {"otel_proxy/watch.py": Score(80, 20, 0)})
    assert mutation_scores.check(budget_s=60) == 1 and runs == ["otel_proxy/watch.py"]
    assert "| otel_proxy/watch.py | 80 | 20 | 0 | 80.0 % | no |" in capsys.readouterr().err
    commit(repo, "a test changed")
    runs = measured(monkeypatch, {"otel_proxy/watch.py": Score(90, 10, 0)})  # the same score: the row still holds
    assert mutation_scores.check(budget_s=60) == 0 and runs == ["otel_proxy/watch.py"]
    table = repo / "docs" / "testing.md"
    table.write_text(table.read_text().replace("| 90 | 10 | 0 | 90.0 % |", "| 91 | 10 | 0 | 90.1 % |"))
    commit(repo, "measured again")  # the row written after the change: nothing to run
    runs = measured(monkeypatch, {})
    assert mutation_scores.check(budget_s=60) == 0 and runs == []


def test_past_the_budget_a_stale_row_fails_rather_than_passing_unchecked(repo, monkeypatch, capsys):
    (repo / "otel_proxy" / "watch.py").write_text("x = 2\n")
    (repo / "otel_proxy" / "labels.py").write_text("y = 2\n")
    runs = measured(monkeypatch, {"otel_proxy/watch.py": Score(90, 10, 0), "otel_proxy/labels.py": Score(8, 2, 0)})
    assert mutation_scores.check(budget_s=-1) == 1 and runs == []
    assert capsys.readouterr().err.count("past the time budget") == 2


def test_a_row_that_does_not_add_up_is_refused(repo):
    table = repo / "docs" / "testing.md"
    table.write_text(table.read_text().replace("| 80.0 % | no |", "| 80.0 % | yes |"))
    with pytest.raises(SystemExit, match="labels.py|line 6"):
        mutation_scores.recorded(table)
