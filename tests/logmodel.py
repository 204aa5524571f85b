"""A model of what ia-joblog must say about a log, and big random logs to
check it on: status, pending and skip are judged against ``model_of``."""

import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter

from iatools.contract import jobs
from tests.helpers import command, parse_jsonl, run

JOBLOG = command("ia-joblog")
#: The fields an event adds to its job: the contract (iatools(7), EVENTS).
EVENT_FIELDS = set(jobs.EVENT_FIELDS)


#: A timestamp as the writers give it.
iso = jobs.timestamp


def stderr_text(result):
    return result.stderr.decode(errors="replace")


def job_keys(records):
    return [(r["id"], r.get("file")) for r in records]


def compact(records):
    return b"".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                    for r in records)


def reopens(e):
    return e["event"] == "damaged" or (e["event"] == "queued" and e.get("reason") == "changed")


def model_of(events):
    """What status, pending and skip must say about a list of valid events:
    (key -> state, key -> its pending job's event, key -> (error,
    retryable) of its latest failure, bytes of the first completions, key ->
    (size, updated) of its latest completion, keys whose latest outcome is
    a permanent failure)."""
    state, first_event, failure, version, outcome = {}, {}, {}, {}, {}
    bytes_done = 0
    for n, e in enumerate(events):
        key = (e["id"], e.get("file"))
        first_event.setdefault(key, (n, e))
        kind = e["event"]
        if kind in ("completed", "verified"):
            if kind == "completed" and state.get(key) != "completed":
                bytes_done += e.get("bytes", 0)
            state[key] = "completed"
            version[key] = (e.get("size"), e.get("updated"))
            outcome[key] = kind
            continue
        if reopens(e) or kind == "failed":
            outcome[key] = "permanent" if e.get("retryable") is False else kind
        if reopens(e):
            state[key] = "damaged" if kind == "damaged" else "changed"
            first_event[key] = (n, e)  # pending prints the latest one
        elif kind in ("started", "failed") and state.get(key) != "completed":
            state[key] = kind
            if kind == "failed":
                failure[key] = (e.get("error") or "unknown error", e.get("retryable") is not False)
        else:
            state.setdefault(key, "queued")
    permanent = {key for key, o in outcome.items() if o == "permanent"}
    return state, first_event, failure, bytes_done, version, permanent


def _remaining_bytes(events, state):
    """The sum of the latest queued "size" of the keys neither completed nor
    failed; a key reopened (damaged, changed upstream) counts the size it
    was queued with since, if any."""
    size = {}
    for e in events:
        if reopens(e):
            size[(e["id"], e.get("file"))] = 0
        if e["event"] == "queued" and type(e.get("size")) is int and e["size"] >= 0:
            size[(e["id"], e.get("file"))] = e["size"]
    return sum(n for key, n in size.items() if state[key] not in ("completed", "failed"))


def big_log(rng, count, recent_from=None):
    """count compact events over a few thousand keys (item and file keys,
    non-ASCII and escaped file names, user fields of each kind), old
    timestamps, recent ones from index recent_from on."""
    keys = [(f"item-{n:05d}_x.y", None) for n in range(2500)]
    keys += [(f"files{n:04d}", f"dir/caf\u00e9 {n}.txt") for n in range(500)]
    now = time.time()
    events = []
    for n in range(count):
        ident, file = rng.choice(keys)
        kind = rng.choice(["queued", "queued", "started", "completed", "failed",
                           "planned", "skipped", "completed", "verified", "damaged", "changed"])
        e = {"event": "queued" if kind == "changed" else kind, "id": ident}
        if file is not None:
            e["file"] = file
        e.update(size=rng.randrange(3), batch=str(n % 7), note=None, flag=True)
        if rng.random() < 0.7:
            e["updated"] = f"2026-0{rng.randrange(1, 3)}-01"
        e["ts"] = iso(now - (30 if recent_from is not None and n >= recent_from else 86400))
        e.update(host="h", pid=7)
        if kind == "changed":
            e["reason"] = "changed"
        elif kind == "damaged":
            e.update(files=1, bytes=10, missing=["a.txt"], wrong_size=[], wrong_md5=[],
                     extra=[])
        elif kind == "verified":
            e.update(files=1, bytes=10)
        elif kind == "completed":
            e.update(files=1, bytes=rng.randrange(10**5), seconds=0.5)
        elif kind == "failed":
            e.update(bytes=rng.randrange(100), error=rng.choice(["HTTP 503", "md5 mismatch"]),
                     retryable=rng.random() < 0.5)
        events.append(e)
    return events


def assert_readings_agree_with_model(log, events, recent_from=None, rng=None):
    """status --json, pending, completed and skip of ``log``, whose events
    are ``events`` (``recent_from`` on: of the last minute), say what the
    model does.  skip appends queued events, which change none of that but
    the keys it finds changed upstream."""
    state, first_event, failure, bytes_done, version, permanent = model_of(events)

    result = _joblog("status", "--json", log)
    assert result.returncode == 0 and result.stderr == b"", stderr_text(result)
    (summary,) = parse_jsonl(result.stdout)
    tally = Counter(state.values())
    assert {k: summary[k] for k in ("total", "completed", "failed", "in_progress", "pending",
                                    "changed", "damaged")} == {
        "total": len(state), "completed": tally["completed"], "failed": tally["failed"],
        "in_progress": tally["started"], "changed": tally["changed"],
        "damaged": tally["damaged"],
        "pending": tally["queued"] + tally["changed"] + tally["damaged"]}
    assert summary["bytes"] == sum(e.get("bytes", 0) for e in events
                                   if e["event"] == "completed")
    assert summary["bytes"] >= bytes_done
    assert summary["remaining_bytes"] == _remaining_bytes(events, state)
    failed_now = [failure[k] for k, s in state.items() if s == "failed"]
    assert summary["failed_retryable"] == sum(r for _, r in failed_now)
    assert summary["failed_permanent"] == sum(not r for _, r in failed_now)
    assert {e["error"]: e["count"] for e in summary["errors"]} == {
        error: [f[0] for f in failed_now].count(error) for error, _ in failed_now}
    recent = [e for e in events[recent_from:] if e["event"] == "completed"]
    if recent_from is not None:
        assert summary["jobs_per_second"] * 600 >= len(recent) * 0.9

    pending = _joblog("pending", log)
    assert pending.returncode == 0 and pending.stderr == b"", stderr_text(pending)
    expected = [{k: v for k, v in e.items() if k not in EVENT_FIELDS}
                for key, (_, e) in sorted(first_event.items(), key=lambda item: item[1][0])
                if state[key] != "completed"]
    assert parse_jsonl(pending.stdout) == expected

    done = _joblog("completed", log)
    assert done.returncode == 0 and done.stderr == b""
    assert sorted(job_keys(parse_jsonl(done.stdout)), key=str) == sorted(
        (k for k, s in state.items() if s == "completed"), key=str)

    jobs, changed = _jobs_to_skip(rng or random.Random(1), state, version)
    with tempfile.TemporaryDirectory() as elsewhere:
        # skip records the changed jobs: on a copy, which the next reading
        # of the log does not see.
        copy = shutil.copy(log, elsewhere)
        if os.path.exists(f"{log}.completed-checkpoint"):
            shutil.copy(f"{log}.completed-checkpoint", elsewhere)
        skipped = _joblog("skip", copy, input=compact(jobs))
    assert skipped.returncode == 0, stderr_text(skipped)
    assert job_keys(parse_jsonl(skipped.stdout)) == [
        k for k in job_keys(jobs)
        if (state[k] != "completed" and k not in permanent) or k in changed]


def _jobs_to_skip(rng, state, version):
    """A job per key, some with the version of their latest completion,
    some with another, some with none; and the keys of completed jobs
    whose version differs."""
    jobs, changed = [], set()
    for key in state:
        job = {"id": key[0], **({"file": key[1]} if key[1] else {})}
        size, updated = version.get(key, (None, None))
        if rng.random() < 0.5 and (size is not None or updated is not None):
            other = rng.random() < 0.5
            if size is not None:
                job["size"] = size + other
            if updated is not None:
                job["updated"] = updated + "x" * other
            if other and state[key] == "completed":
                changed.add(key)
        jobs.append(job)
    return jobs, changed


def _joblog(*args, input=b""):
    return run([JOBLOG, *map(str, args)], input=input)


def days_of_events(now, jobs=1000, recent=5):
    """The log of a run of four days to ``now``: ``jobs`` jobs queued with
    sizes, completed at a pace that changes with the hour of the day, at
    the middle of each hour before now (so that the seconds a test takes
    move none across an hour), ``recent`` of them within the last 10
    minutes, then three failures, one of them for good.  Returns the events
    and the jobs completed in each hour before now (0: the last hour)."""
    sizes = [1000 + n for n in range(jobs)]
    events = [{"event": "queued", "id": f"item{n:04d}", "size": sizes[n],
               "ts": iso(now - 4 * 86400 - 60), "host": "h", "pid": 1} for n in range(jobs)]
    per_hour = [(h % 24) // 4 + 1 for h in range(96)]
    per_hour[0] += recent
    done = 0
    for hours_ago in range(95, -1, -1):
        for n in range(per_hour[hours_ago]):
            late = hours_ago == 0 and n >= per_hour[0] - recent
            when = now - (200 if late else hours_ago * 3600 + 1800)
            events.append({"event": "completed", "id": f"item{done:04d}", "size": sizes[done],
                           "ts": iso(when + n), "host": "h", "pid": 1, "files": 1,
                           "bytes": sizes[done], "seconds": 1.0})
            done += 1
    for n, (error, retryable) in enumerate([("HTTP 503", True), ("item is dark", False),
                                            ("HTTP 503", True)]):
        events.append({"event": "failed", "id": f"item{done + n:04d}", "size": sizes[done + n],
                       "ts": iso(now - 100 + n), "host": "h", "pid": 1, "error": error,
                       "retryable": retryable})
    events.sort(key=lambda e: e["ts"])
    return events, per_hour
