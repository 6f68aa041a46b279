"""The table the benchmarks fill in, printed and written to BENCHMARKS.md."""

from __future__ import annotations

from dataclasses import dataclass, field

TITLES = {
    1: "worker drain",
    2: "API submit",
    3: "batch submit",
    4: "submit to start",
    5: "scale (jobs in PostgreSQL)",
    6: "crash recovery",
    7: "admin dashboard",
    8: "workflows",
    9: "schedule firing",
    10: "fair dispatch",
    11: "I/O pool (webhook fan-out)",
}


@dataclass(frozen=True)
class Row:
    number: int
    measure: str
    value: str
    goal: str = ""
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: dict[int, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, number: int, measure: str, value: str, goal: str = "", met: bool | None = None) -> None:
        row = Row(number, measure, value, goal, met)
        self.rows.append(row)
        print(f"  {_plain(row)}", flush=True)

    def note(self, number: int, text: str) -> None:
        self.notes.setdefault(number, []).append(text)

    def error(self, number: int, text: str) -> None:
        text = " ".join(text.split())
        self.errors.append(f"{number}. {TITLES[number]}: {text}")
        self.add(number, "error", text.replace("|", "/").replace("\n", " ")[:300])

    def table(self) -> str:
        lines = ["| # | benchmark | measure | value | goal | met |", "|---|---|---|---|---|---|"]
        for row in sorted(self.rows, key=lambda r: r.number):  # stable: each benchmark's own order
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            lines.append(
                f"| {row.number} | {TITLES[row.number]} | {row.measure} | {row.value} | {row.goal or '—'} | {met} |"
            )
        return "\n".join(lines)

    def markdown(self, *, command: str, machine: list[tuple[str, str]], quick: bool, interrupted: bool) -> str:
        out = [
            "# Benchmarks",
            "",
            f"Written by `{command}`: do not edit by hand, run it again (what each figure measures, and how:",
            "[bench/README.md](bench/README.md)). Every figure below comes from that one run, the platform and its",
            "baselines measured side by side on the same machine, one after the other.",
            "",
        ]
        if quick:
            out += ["> **--quick run**: small N, a smoke test of the scripts. Do not quote these figures.", ""]
        if interrupted:
            out += ["> **Interrupted**: the run was stopped before every benchmark had finished.", ""]
        out += ["## Machine", "", "| | |", "|---|---|"]
        out += [f"| {name} | {value} |" for name, value in machine]
        out += ["", "## Results", "", self.table(), ""]
        if self.notes or self.errors:
            out += ["## Notes", ""]
        for number in sorted(self.notes):
            out += [f"**{number}. {TITLES[number]}**", ""]
            out += [f"- {text}" for text in self.notes[number]]
            out.append("")
        if self.errors:
            out += ["**Errors**", ""]
            out += [f"- {text}" for text in self.errors]
            out.append("")
        return "\n".join(out)


def _plain(row: Row) -> str:
    text = f"{row.number}. {TITLES[row.number]}: {row.measure}: {row.value}"
    if row.goal:
        text += f"   (goal {row.goal}: {'met' if row.met else 'NOT met'})"
    return text


def fmt_ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def fmt_rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"
