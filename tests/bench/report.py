"""Result rows: their rates, the ratios to the anchors of the same run, the
Markdown table, and the JSONL record."""

import json
import platform
import time
from dataclasses import asdict, dataclass, field

MIB = 1 << 20


@dataclass
class Row:
    workload: str
    contender: str
    wall: float = None           # seconds (the median run's)
    runs: int = 1
    items: int = None            # items (or jobs) the run handled
    files: int = None
    bytes: int = None
    cpu: float = None            # user + system seconds, all processes
    peak_rss_mb: float = None    # the largest process's peak
    status: int = None           # exit status of the median run
    verify: str = "n/a"          # "ok", "FAILED-VERIFY (...)", "n/a"
    unit: str = "items/s"        # the rate ratios compare: items/s, MiB/s, jobs/s
    anchor: bool = False         # a reference the other rows are compared with
    ratios: dict = field(default_factory=dict)  # anchor contender -> rate ratio
    target: str = ""
    met: bool = None             # None: no target, or not measurable
    note: str = ""
    extra: dict = field(default_factory=dict)  # workload-specific numbers

    @property
    def items_per_s(self):
        return self.items / self.wall if self.items and self.wall else None

    @property
    def mib_per_s(self):
        return self.bytes / MIB / self.wall if self.bytes and self.wall else None

    @property
    def rate(self):
        """The rate in this row's ``unit`` (None when it did not run)."""
        if self.unit == "MiB/s":
            return self.mib_per_s
        return self.items_per_s

    @property
    def failed(self):
        return self.verify.startswith("FAILED") or self.wall is None

    def add_note(self, text):
        self.note = "; ".join(filter(None, [self.note, text]))

    def record(self, run_info):
        data = asdict(self)
        data.update(items_per_s=_round(self.items_per_s), mib_per_s=_round(self.mib_per_s),
                    **run_info)
        return data


def _round(value, digits=4):
    return None if value is None else round(value, digits)


def add_ratios(rows):
    """Each row's rate over each anchor's rate, within its workload."""
    for row in rows:
        for anchor in rows:
            if (anchor.anchor and anchor is not row and anchor.workload == row.workload
                    and row.rate and anchor.rate and not row.failed and not anchor.failed):
                row.ratios[anchor.contender] = round(row.rate / anchor.rate, 3)


def run_info(quick):
    return {"run_ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(), "python": platform.python_version(), "quick": quick}


def write_jsonl(rows, path, info):
    with open(path, "a", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row.record(info), ensure_ascii=False) + "\n")


COLUMNS = ("workload", "contender", "runs", "wall s", "items/s", "MiB/s", "xfer MiB/s", "CPU s",
           "peak RSS MB", "ratio to anchors (rate)", "verify", "target", "met", "note")


def table(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = (row.workload, row.contender, str(row.runs), _num(row.wall),
                 _num(row.items_per_s), _num(row.mib_per_s),
                 _num(row.extra.get("transfer_mib_per_s")), _num(row.cpu),
                 _num(row.peak_rss_mb, 0), _ratios(row), row.verify,
                 row.target or ("anchor" if row.anchor else ""), _met(row.met), row.note)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _num(value, digits=None):
    if value is None:
        return "-"
    if digits is None:
        digits = 3 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
    return f"{value:,.{digits}f}"


def _ratios(row):
    return ", ".join(f"{r:.2f}× {name}" for name, r in row.ratios.items()) or "-"


def _met(met):
    return {True: "MET", False: "NOT MET", None: ""}[met]
