"""hw_collector/log_follow.py: a log followed from its end, across rotation, truncation, absence and long lines; a
command's output, started again when it ends."""

from __future__ import annotations

import os
import sys
import time

import pytest

from hw_collector.log_follow import MAX_LINE, CommandFollower, FileFollower, Missing, follower


def followed(tmp_path) -> tuple:
    """An empty log, followed from its end."""
    log = tmp_path / "server.log"
    log.write_text("")
    follow = FileFollower(log)
    assert follow.lines() == []
    return log, follow


def append(path, text: str) -> None:
    with path.open("a") as out:
        out.write(text)


def test_a_file_is_followed_from_its_end_and_a_line_is_handed_on_once_whole(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("before the collector\n")
    follow = FileFollower(log)
    assert follow.lines() == []  # the past is not the collector's
    append(log, "one\ntw")
    assert follow.lines() == ["one"]
    append(log, "o\r\nthree\n")
    assert follow.lines() == ["two", "three"]
    assert follow.lines() == []


def test_a_rotated_file_is_finished_then_the_new_one_read_from_its_start(tmp_path):
    log, follow = followed(tmp_path)
    append(log, "a\n")
    os.rename(log, tmp_path / "server.log.1")
    append(tmp_path / "server.log.1", "b, written before the writer reopened\nc without a newline")
    assert follow.lines() == ["a", "b, written before the writer reopened", "c without a newline"]  # the new file is not there yet
    log.write_text("d\n")
    assert follow.lines() == ["d"]


def test_a_file_cut_in_place_is_read_again_from_its_start(tmp_path):
    log, follow = followed(tmp_path)
    append(log, "a long line before the cut\n")
    assert follow.lines() == ["a long line before the cut"]
    log.write_text("new\n")  # copytruncate: the same file, shorter
    assert follow.lines() == ["new"]


def test_a_missing_log_is_said_and_read_from_its_start_once_it_appears(tmp_path):
    log = tmp_path / "logs" / "server.log"
    follow = FileFollower(log)
    with pytest.raises(Missing, match="no log at"):
        follow.lines()
    log.parent.mkdir()
    log.write_text("Ollama started after the collector\n")
    assert follow.lines() == ["Ollama started after the collector"]


def test_a_huge_line_is_cut_and_garbage_is_read_as_text(tmp_path):
    log, follow = followed(tmp_path)
    with log.open("ab") as out:
        out.write(b"x" * (3 * MAX_LINE))
        out.flush()
        assert follow.lines() == []
        out.write(b"y" * MAX_LINE + b"\n\xff\xfe\x00bytes\n")
    huge, garbage = follow.lines()
    assert huge == "x" * MAX_LINE and garbage == "\ufffd\ufffd\x00bytes"


def wait_for(follow: CommandFollower, count: int) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + 30
    while len(got) < count:
        assert time.monotonic() < deadline, got
        got += follow.lines()
    return got


def test_a_commands_lines_are_taken_and_it_is_started_again_when_it_ends():
    follow = CommandFollower([sys.executable, "-c", "print('a'); print('b', flush=True)"])
    try:
        assert wait_for(follow, 4)[:4] == ["a", "b", "a", "b"]  # ended, started again: a container restarted
    finally:
        follow.close()
    with pytest.raises(Missing, match="not installed"):
        CommandFollower(["no-such-command-here"]).lines()


def test_what_the_flag_names():
    assert follower("off") is None
    assert isinstance(follower("/var/log/x.log"), FileFollower)
    assert follower("journald").command[:2] == ["journalctl", "--follow"] and follower("journald:my-ollama").command[-1] == "my-ollama"  # type: ignore[union-attr]
    assert follower("podman:ollama").command == ["podman", "logs", "--follow", "--since=0s", "ollama"]  # type: ignore[union-attr]
