"""The chaos suite's recovery figures in BENCHMARKS.md.

`bin/test tests/chaos` appends one line per case to test-artifacts/chaos-figures.txt
(`<time> CHAOS <case>: name=value, ...`). `python -m bench.chaos_figures` writes the latest
line of each case into BENCHMARKS.md's "Recovery (chaos suite)" section, replacing the one
there; bench/run carries that section over when it rewrites the file. Reports; never asserts."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Recovery (chaos suite)"
LINE = re.compile(r"^(?P<time>\S+) CHAOS (?P<case>[\w-]+): (?P<figures>.*)$")
GOALS = {
    "db-cut": ("cut_to_next_successful_sweep", 5.0, "next sweep after all database connections are cut"),
    "beat-failover": ("kill_to_new_leader", 10.0, "leader failover after kill -9"),
}


def latest_by_case(text: str) -> dict[str, tuple[str, str]]:
    cases: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        match = LINE.match(line.strip())
        if match:
            cases[match["case"]] = (match["time"], match["figures"])
    return cases


def _seconds(figures: str, name: str) -> float | None:
    match = re.search(rf"\b{name}=([0-9.]+)s\b", figures)
    return float(match.group(1)) if match else None


def section(cases: dict[str, tuple[str, str]], *, commit: str) -> str:
    out = [
        HEADING,
        "",
        f"Written by `python -m bench.chaos_figures` from `bin/test tests/chaos` at {commit} (each case's latest",
        "run; the suite prints the same lines). Each case is a real stack of processes; every accepted job",
        "ended exactly once (one succeeded attempt in PostgreSQL, one side effect), or the case failed.",
        "",
        "| goal | figure | met |",
        "|---|---|---|",
    ]
    for case, (name, limit, what) in GOALS.items():
        value = _seconds(cases.get(case, ("", ""))[1], name)
        shown = "not measured" if value is None else f"{value:.2f} s"
        met = "" if value is None else ("yes" if value < limit else "**no**")
        out.append(f"| {what} < {limit:g} s | {shown} | {met} |")
    out += ["", "| case | when | figures |", "|---|---|---|"]
    for case, (when, figures) in sorted(cases.items()):
        out.append(f"| {case} | {when} | {figures.replace('|', '/')} |")
    return "\n".join(out) + "\n"


def carried_over(text: str) -> str:
    """The section as it stands in an existing BENCHMARKS.md, for bench/run to keep."""
    start = text.find(HEADING)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(HEADING))
    return text[start:] if end < 0 else text[start : end + 1]


def replace_section(text: str, new: str) -> str:
    old = carried_over(text)
    if old:
        return text.replace(old, new)
    return text.rstrip("\n") + "\n\n" + new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", default=str(ROOT / "test-artifacts" / "chaos-figures.txt"))
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--commit", default="the working tree")
    args = parser.parse_args(argv)
    figures = Path(args.figures)
    if not figures.exists():
        print(f"no {figures}: run bin/test tests/chaos first", file=sys.stderr)
        return 1
    cases = latest_by_case(figures.read_text())
    output = Path(args.output)
    new = section(cases, commit=args.commit)
    output.write_text(replace_section(output.read_text() if output.exists() else "", new))
    print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
