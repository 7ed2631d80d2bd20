"""Per-file mutation scores: from a finished `mutmut run` (make mutation), or the recorded table checked (--check).

A mutant counts as killed when a test failed on it (or it timed out: an infinite loop is caught);
"survived" and "no tests" count against the score.

Without arguments: one line per file of the last run in mutants/ and the survivors' names
(`mutmut show NAME` prints the change); exits 1 when a file is under TARGET.

``--check``: docs/testing.md's table kept honest. Each row was measured on the code of the commit that last
changed the row (git blame). A row is stale when its file, or the file's own tests (tests/proxy/test_<name>.py),
changed since: mutmut is run again on each stale file (in a fresh mutants/), and the check fails when the score it
gives is not the row's (within TOLERANCE), saying which row to write; a row's score and "target met" must be its counts'. Rows nothing has touched
since are taken as they are, so the check costs nothing until the proxy's core or its tests change (make test
runs it after the suite, make mutation-check alone); ``--budget-s`` bounds the time of the files run again (a file
takes 2 to 25 minutes on two cores), and one past it fails the check (run make mutation and write the rows) rather than passing unchecked.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "testing.md"
MUTMUT = ROOT / ".venv-mutation" / "bin" / "mutmut"
TARGET = 0.85
TOLERANCE = 0.01  # a run may differ by a timeout or two on a busy machine
KILLED = {"killed", "timeout", "caught by type check"}
ROW = re.compile(r"^\| (otel_proxy/\w+\.py) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) % \| (yes|no)\b")


@dataclass(frozen=True)
class Score:
    killed: int
    survived: int
    no_tests: int

    @property
    def total(self) -> int:
        return self.killed + self.survived + self.no_tests

    @property
    def share(self) -> float:
        return self.killed / self.total if self.total else 1.0


@dataclass(frozen=True)
class Row:
    file: str
    score: Score
    line: int  # 1-based, in docs/testing.md
    commit: str  # the commit that last changed the row: the code it was measured on


def scores(mutants: Path) -> dict[str, tuple[Score, dict[str, str]]]:
    """Each mutated file's score in a finished run, and its mutants' statuses."""
    from mutmut.stats import status_by_exit_code  # in .venv-mutation only

    found = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        statuses = {name: status_by_exit_code[code] for name, code in codes.items()}
        counts = Counter(statuses.values())
        killed = sum(counts[status] for status in KILLED)
        found[str(meta.relative_to(mutants).with_suffix(""))] = (Score(killed, counts["survived"], counts["no tests"]), statuses)
    return found


def report(mutants: Path = ROOT / "mutants") -> int:
    failing = 0
    for source, (score, statuses) in scores(mutants).items():
        failing += score.share < TARGET or "not checked" in statuses.values()
        detail = ", ".join(f"{status} {count}" for status, count in sorted(Counter(statuses.values()).items()))
        print(f"{source}: {score.share:.1%} killed ({score.killed} of {score.total}; {detail})")
        for name, status in sorted(statuses.items()):
            if status not in KILLED:
                print(f"    {status}: {name}")
    return 1 if failing else 0


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.strip()} (the check needs the history: a full clone)")
    return done.stdout


def recorded(table: Path | None = None) -> list[Row]:
    """The table's rows, each with the commit that last changed it."""
    table, rows = table or TABLE, []
    for number, text in enumerate(table.read_text().splitlines(), start=1):
        match = ROW.match(text)
        if match:
            blame = git("blame", "--porcelain", "-L", f"{number},{number}", "--", str(table.relative_to(ROOT)))
            score = Score(int(match.group(2)), int(match.group(3)), int(match.group(4)))
            if round(score.share * 100, 1) != float(match.group(5)) or (score.share >= TARGET) != (match.group(6) == "yes"):
                raise SystemExit(f"{table.name} line {number}: {score.share:.1%} of {score.total}, not what the row says: {text}")
            rows.append(Row(match.group(1), score, number, blame.split()[0]))
    if not rows:
        raise SystemExit(f"no score rows found in {table}")
    return rows


def watched(row: Row) -> list[str]:
    """What a row's score depends on: the file and its own in-process tests."""
    return [row.file, f"tests/proxy/test_{Path(row.file).stem}.py"]


def stale(row: Row) -> list[str]:
    """The files of ``watched`` changed since the row's commit (uncommitted changes included)."""
    if set(row.commit) == {"0"}:  # the row itself is not committed yet: measured on the working tree
        return []
    return [path for path in git("diff", "--name-only", row.commit, "--", *watched(row)).split()]


def measure(file: str) -> Score:
    """mutmut run again on one file, from a fresh mutants/."""
    if not MUTMUT.exists():  # mutmut's own venv, as make mutation builds it
        subprocess.run(["make", "--no-print-directory", ".venv-mutation/.installed"], cwd=ROOT, check=True)
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    module = file.removesuffix(".py").replace("/", ".")
    subprocess.run([str(MUTMUT), "run", f"{module}*", "--max-children", "2"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    done = subprocess.run([str(MUTMUT.parent / "python"), __file__, "--scores-json"], cwd=ROOT, check=True, capture_output=True, text=True)
    killed, survived, no_tests, unchecked = json.loads(done.stdout)[file]
    if unchecked:
        raise SystemExit(f"mutmut left {unchecked} mutants of {file} not checked")
    return Score(killed, survived, no_tests)


def check(budget_s: float) -> int:
    started, failures = time.monotonic(), []
    for row in recorded():
        changed = stale(row)
        if not changed:
            print(f"{row.file}: {row.score.share:.1%} as recorded at {row.commit[:10]}, nothing it depends on changed since")
            continue
        if time.monotonic() - started > budget_s:
            failures.append(f"{row.file}: {', '.join(changed)} changed since {row.commit[:10]}, past the time budget: run make mutation "
                            f"and write its row (docs/testing.md line {row.line})")
            continue
        fresh = measure(row.file)
        print(f"{row.file}: {', '.join(changed)} changed since {row.commit[:10]}; recorded {row.score.share:.1%}, measured now "
              f"{fresh.share:.1%} ({fresh.killed} killed, {fresh.survived} survived, {fresh.no_tests} no tests)")
        if abs(fresh.share - row.score.share) > TOLERANCE:
            failures.append(f"{row.file}: the table says {row.score.share:.1%}, a run now gives {fresh.share:.1%}: write "
                            f"| {row.file} | {fresh.killed} | {fresh.survived} | {fresh.no_tests} | {fresh.share * 100:.1f} % | "
                            f"{'yes' if fresh.share >= TARGET else 'no'} | at docs/testing.md line {row.line}")
    for failure in failures:
        print("STALE " + failure, file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check docs/testing.md's table against the code, running stale files again")
    parser.add_argument("--budget-s", type=float, default=1800, help="time for the files run again (--check)")
    parser.add_argument("--scores-json", action="store_true", help=argparse.SUPPRESS)  # measure()'s reading of mutants/
    args = parser.parse_args()
    if args.scores_json:
        found = scores(ROOT / "mutants")
        print(json.dumps({source: [s.killed, s.survived, s.no_tests, sum(1 for status in statuses.values() if status == "not checked")]
                          for source, (s, statuses) in found.items()}))
        return 0
    return check(args.budget_s) if args.check else report()


if __name__ == "__main__":
    sys.exit(main())
