"""What ``ia-joblog status`` says of a log, for a run of minutes or of days:
the counts, what is left, the rates over three windows and their ETAs, a
day of throughput per hour, the latest failures -- as one JSON object or
as a table for people, once or redrawn in place (--watch)."""

import calendar
import os
import time

from iatools.base.sizes import format_duration, format_size
from iatools.contract import jsonl
from iatools.contract.jobs import timestamp
from iatools.log.logstate import LogState

#: The windows of the rates, before now: (name, seconds).
WINDOWS = (("10min", 600), ("1h", 3600), ("1d", 86400))
#: The ETA goes by the first of these windows that has a rate: an hour is
#: steady enough for a run of days, and still follows a change of pace.
_ETA_WINDOWS = ("1h", "10min", "1d")
HISTORY_HOURS = 24
#: Eight levels, lowest first; a zero is a blank.
_BLOCKS = "▁▂▃▄▅▆▇█"
_ASCII_LEVELS = "_.-:=+*#"


def read(path, by_field=None, now=None):
    """The LogState of the log at ``path``, with the completions of the
    day before ``now`` counted per minute (its checkpoint keeps them)."""
    now = time.time() if now is None else now
    since = now - max(HISTORY_HOURS * 3600, WINDOWS[-1][1])
    return LogState(by_field=by_field, history_since=timestamp(since)).read(path)


def summarise(path, by_field=None):
    """The summary of the log at ``path``, a dict: what --json prints."""
    now = time.time()
    state = read(path, by_field, now)
    summary = state.counts()
    summary["bytes"] = state.bytes_done
    summary["last_event"] = state.last_ts or None
    summary["last_event_seconds_ago"] = (round(now - _seconds(state.last_ts), 3)
                                         if state.last_ts else None)
    summary["remaining_jobs"] = summary["pending"] + summary["in_progress"]
    summary["remaining_bytes"] = state.remaining_bytes()
    minutes = [(_seconds(minute + ":00Z"), jobs, size)
               for minute, (jobs, size) in state.minutes.items()]
    summary["rates"] = {name: _rate(minutes, now, seconds) for name, seconds in WINDOWS}
    ten_minutes = summary["rates"]["10min"] or {}
    summary["jobs_per_second"] = ten_minutes.get("jobs_per_second")
    summary["bytes_per_second"] = ten_minutes.get("bytes_per_second")
    summary.update(_etas(summary))
    summary["history"] = _history(minutes, now)
    summary["errors"] = [{"error": e, "count": n} for e, n in state.common_errors()]
    summary["recent_failures"] = [
        {"id": f.id, **({"file": f.file} if f.file else {}), "error": f.error,
         "retryable": f.retryable, "ts": f.ts or None,
         "seconds_ago": round(now - _seconds(f.ts), 3) if f.ts else None}
        for f in state.recent_failures()]
    if by_field is not None:
        summary["by"] = {"field": by_field, "groups": state.groups()}
    return summary


def _seconds(ts):
    """Seconds since the epoch of a timestamp as jobs.timestamp writes it."""
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + float(ts[19:-1] or 0)


def _rate(minutes, now, window):
    """Jobs and bytes per second over the ``window`` seconds before now,
    from the completions counted per minute: over the part of the window
    since the first of them (a run started 3 minutes ago has a rate over 3
    minutes); None for fewer than two."""
    start = now - window
    within = [(t, jobs, size) for t, jobs, size in minutes if t + 60 > start and t <= now]
    jobs = sum(j for _, j, _ in within)
    if jobs < 2:
        return None
    span = max(now - max(start, min(t for t, _, _ in within)), 1.0)
    return {"jobs_per_second": round(jobs / span, 6),
            "bytes_per_second": round(sum(s for _, _, s in within) / span),
            "seconds": round(span)}


def _etas(summary):
    """The time left at the rate of the first of _ETA_WINDOWS that has one,
    by the jobs left and by the bytes left."""
    window = next((w for w in _ETA_WINDOWS if summary["rates"][w]), None)
    if window is None:
        return {"eta_seconds": None, "eta_bytes_seconds": None, "eta_window": None}
    rate = summary["rates"][window]
    by_bytes = rate["bytes_per_second"]
    # Jobs left without a known size say nothing of the bytes left.
    sized = summary["remaining_bytes"] or not summary["remaining_jobs"]
    return {"eta_seconds": round(summary["remaining_jobs"] / rate["jobs_per_second"]),
            "eta_bytes_seconds": (round(summary["remaining_bytes"] / by_bytes)
                                  if by_bytes and sized else None),
            "eta_window": window}


def _history(minutes, now):
    """Jobs and bytes completed in each of the last HISTORY_HOURS hours
    before now, the oldest first."""
    jobs, size = [0] * HISTORY_HOURS, [0] * HISTORY_HOURS
    for t, count, nbytes in minutes:
        hours_ago = int((now - t) // 3600)
        if 0 <= hours_ago < HISTORY_HOURS:
            jobs[-1 - hours_ago] += count
            size[-1 - hours_ago] += nbytes
    return {"hours": HISTORY_HOURS, "jobs": jobs, "bytes": size}


def sparkline(values, unicode=True):
    """One character per value, its height against the largest; a blank
    for zero."""
    levels = _BLOCKS if unicode else _ASCII_LEVELS
    top = max(values, default=0)
    if not top:
        return " " * len(values)
    return "".join(levels[max(0, -(-v * len(levels) // top) - 1)] if v else " " for v in values)


def unicode_terminal(environ=os.environ):
    """Does the locale (LC_ALL, else LC_CTYPE, else LANG) speak UTF-8?
    Python itself writes UTF-8 under LC_ALL=C, but the terminal may not."""
    for name in ("LC_ALL", "LC_CTYPE", "LANG"):
        if environ.get(name):
            return environ[name].lower().replace("-", "").endswith("utf8")
    return False


def format_table(path, s, unicode=True):
    """The summary ``s`` as lines for people."""
    total = s["total"] or 1
    lines = [
        f"log          {path}",
        "last event   " + (f"{_ago(s['last_event_seconds_ago'])} ({s['last_event']})"
                           if s["last_event"] else "none"),
        f"total        {s['total']}",
        f"completed    {s['completed']} ({100 * s['completed'] / total:.1f}%)",
        f"failed       {s['failed']} ({s['failed_retryable']} retryable, "
        f"{s['failed_permanent']} permanent)",
        f"in progress  {s['in_progress']}",
        f"pending      {s['pending']}" + _reopened(s),
        f"downloaded   {format_size(s['bytes'])}",
        f"remaining    {s['remaining_jobs']} jobs, {format_size(s['remaining_bytes'])}",
    ]
    lines += _rate_lines(s)
    if any(s["history"]["bytes"]):
        history = s["history"]
        lines.append(f"history      {sparkline(history['bytes'], unicode)}  per hour, "
                     f"{history['hours']} h to now (peak {format_size(max(history['bytes']))})")
    if s["errors"]:
        lines.append("errors:")
        lines += [f"  {e['count']:>8}  {e['error']}" for e in s["errors"]]
    if s["recent_failures"]:
        lines.append("latest failures:")
        lines += [f"  {_ago(f['seconds_ago']) if f['ts'] else '':<14} {_key(f)}: {f['error']}"
                  + ("" if f["retryable"] else " (permanent)") for f in s["recent_failures"]]
    if "by" in s:
        lines.append(_format_groups(s["by"]))
    return "\n".join(lines) + "\n"


def _key(job):
    return f"{job['id']}/{job['file']}" if "file" in job else job["id"]


def _ago(seconds):
    return "now" if seconds < 1 else f"{format_duration(seconds)} ago"


def _reopened(s):
    """What of the pending jobs completed once: (changed upstream, damaged)."""
    parts = [f"{s['changed']} changed upstream"] * bool(s["changed"])
    parts += [f"{s['damaged']} damaged"] * bool(s["damaged"])
    return f" ({', '.join(parts)})" if parts else ""


_WINDOW_LABELS = {"10min": "10 min", "1h": "1 h", "1d": "1 day"}


def _rate_lines(s):
    rates = [(name, rate) for name, rate in s["rates"].items() if rate]
    lines = [f"{'rate' if n == 0 else '':<12} {_WINDOW_LABELS[name] + ':':<7} "
             f"{rate['jobs_per_second'] * 60:.1f} jobs/min, "
             f"{format_size(rate['bytes_per_second'])}/s"
             for n, (name, rate) in enumerate(rates)]
    if s["eta_seconds"] is not None:
        eta = f"eta          {format_duration(s['eta_seconds'])} by jobs"
        if s["eta_bytes_seconds"] is not None:
            eta += f", {format_duration(s['eta_bytes_seconds'])} by bytes"
        lines.append(eta + f" (rate of the last {_WINDOW_LABELS[s['eta_window']]})")
    return lines


def _format_groups(by):
    rows = [f"by {by['field']}:",
            f"  {'value':<24} {'total':>9} {'completed':>9} {'failed':>9} {'pending':>9}"]
    for value, c in by["groups"].items():
        rows.append(f"  {value:<24} {c['total']:>9} {c['completed']:>9} {c['failed']:>9} "
                    f"{c['pending'] + c['in_progress']:>9}")
    return "\n".join(rows)


def show(path, by_field, as_json, unicode, streams):
    """Print the summary once on ``streams.stdout`` (cli.Streams)."""
    summary = summarise(path, by_field)
    if as_json:
        output = jsonl.Output(streams.stdout)
        output.record(summary)
        output.flush()
    else:
        _write(streams, format_table(path, summary, unicode))


def _write(streams, text):
    output = jsonl.Output(streams.stdout)
    output.lines([text.encode()])
    output.flush()


def watch(path, by_field, as_json, unicode, interval, streams):
    """Show the summary every ``interval`` seconds until interrupted: on a
    terminal, redrawn in place as watch(1) does; else (and with --json)
    one after the other."""
    in_place = not as_json and streams.stdout_is_terminal
    while True:
        if as_json:
            show(path, by_field, True, unicode, streams)
        else:
            header = f"every {interval:g}s: ia-joblog status {path}    {timestamp()}\n\n"
            text = header + format_table(path, summarise(path, by_field), unicode)
            if in_place:  # home, each line cleared to its end, the rest cleared
                text = "\x1b[H" + text.replace("\n", "\x1b[K\n") + "\x1b[J"
            else:
                text += "\n"
            _write(streams, text)
        time.sleep(interval)
