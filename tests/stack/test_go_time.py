"""ollama_otel_stack/go_time.py's durations held to Go's own ``time.Duration.String`` (the machine's Go, stdlib only),
and the fake's writer of them (tests/fake/server_log.py ``go_duration``) with them."""

from __future__ import annotations

import random

import pytest

from ollama_otel_stack.go_time import go_duration_seconds
from tests.fake.server_log import go_duration
from tests.support.harness import go_run

PROGRAM = """package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		ns, _ := strconv.ParseInt(in.Text(), 10, 64)
		fmt.Println(time.Duration(ns).String())
	}
}
"""


def go_strings(durations_ns: list[int]) -> list[str]:
    return go_run(PROGRAM, [str(ns) for ns in durations_ns])


def test_durations_read_and_written_as_go_writes_them():
    rng = random.Random(5)
    durations = [0, 1, 999, 1000, 1500, 999_999, 1_000_000, 1_500_000, 1_000_000_000, 1_503_217_894, 60_000_000_000, 61_500_000_000,
                 3_600_000_000_000, 3_723_500_000_000, -1_500_000, -90_000_000_000, 100 * 3_600_000_000_000]
    durations += [rng.randrange(1, 10**exponent) for exponent in range(1, 15) for _ in range(20)]
    durations += [-rng.randrange(1, 10**12) for _ in range(20)]
    written = go_strings(durations)
    assert len(written) == len(durations)
    for ns, text in zip(durations, written):
        assert go_duration_seconds(text) == pytest.approx(ns / 1e9, rel=1e-12, abs=1e-12), text
        assert go_duration(ns / 1e9) == text, ns


def test_what_is_not_a_duration_is_none():
    for text in ("", "1.5", "s", "1.5x", "1h 2m", "ms1", "--1s", "1e3s"):
        assert go_duration_seconds(text) is None, text
