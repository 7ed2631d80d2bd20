"""Per-file mutation scores from a finished `mutmut run` (make mutation): killed / all mutants, per file.

A mutant counts as killed when a test failed on it (or it timed out: an infinite loop is caught);
"survived" and "no tests" count against the score. Prints one line per file and the survivors' names
(`mutmut show NAME` prints the change), and exits 1 when a file is under TARGET."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

TARGET = 0.85
KILLED = {"killed", "timeout", "caught by type check"}


def main() -> int:
    failing = 0
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        statuses = {name: status_by_exit_code[code] for name, code in codes.items()}
        counts = Counter(statuses.values())
        killed = sum(counts[status] for status in KILLED)
        score = killed / len(statuses) if statuses else 1.0
        failing += score < TARGET
        source = meta.relative_to("mutants").with_suffix("")
        detail = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
        print(f"{source}: {score:.1%} killed ({killed} of {len(statuses)}; {detail})")
        for name, status in sorted(statuses.items()):
            if status not in KILLED:
                print(f"    {status}: {name}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
