"""A model of what ia-joblog must say about a log, and big random logs to
check it on: status, pending and skip are judged against ``model_of``."""

import json
import time

from tests.helpers import command, parse_jsonl, run

JOBLOG = command("ia-joblog")
EVENT_FIELDS = {"event", "ts", "host", "pid", "files", "files_skipped", "bytes", "seconds",
                "attempts", "error", "retryable", "http_status", "failed_file", "plan",
                "lock_owner"}


def iso(seconds_since_epoch):
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds_since_epoch))
            + f".{int(seconds_since_epoch % 1 * 1000):03d}Z")


def stderr_text(result):
    return result.stderr.decode(errors="replace")


def job_keys(records):
    return [(r["id"], r.get("file")) for r in records]


def compact(records):
    return b"".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                    for r in records)


def model_of(events):
    """What status, pending and skip must say about a list of valid events."""
    state, first_event, failure = {}, {}, {}
    bytes_done = 0
    for e in events:
        key = (e["id"], e.get("file"))
        first_event.setdefault(key, e)
        if state.get(key) == "completed":
            continue
        kind = e["event"]
        if kind == "completed":
            state[key] = "completed"
            bytes_done += e.get("bytes", 0)
        elif kind in ("started", "failed"):
            state[key] = kind
            if kind == "failed":
                failure[key] = (e.get("error") or "unknown error", bool(e.get("retryable")))
        else:
            state.setdefault(key, "queued")
    return state, first_event, failure, bytes_done


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
                           "planned", "skipped"])
        e = {"event": kind, "id": ident}
        if file is not None:
            e["file"] = file
        e.update(size=rng.randrange(10**6), batch=str(n % 7), note=None, flag=True)
        e["ts"] = iso(now - (30 if recent_from is not None and n >= recent_from else 86400))
        e.update(host="h", pid=7)
        if kind == "completed":
            e.update(files=1, bytes=rng.randrange(10**5), seconds=0.5)
        elif kind == "failed":
            e.update(bytes=rng.randrange(100), error=rng.choice(["HTTP 503", "md5 mismatch"]),
                     retryable=rng.random() < 0.5)
        events.append(e)
    return events


def assert_readings_agree_with_model(log, events, recent_from=None):
    """status --json, pending and skip of ``log``, whose events are
    ``events`` (``recent_from`` on: of the last minute), say what the model
    does.  skip appends queued events, which change none of that."""
    state, first_event, failure, bytes_done = model_of(events)

    result = _joblog("status", "--json", log)
    assert result.returncode == 0 and result.stderr == b"", stderr_text(result)
    (summary,) = parse_jsonl(result.stdout)
    tally = {s: list(state.values()).count(s) for s in ("completed", "failed", "started", "queued")}
    assert (summary["total"], summary["completed"], summary["failed"], summary["in_progress"],
            summary["pending"]) == (len(state), tally["completed"], tally["failed"],
                                    tally["started"], tally["queued"])
    assert summary["bytes"] == sum(e.get("bytes", 0) for e in events
                                   if e["event"] == "completed")
    assert summary["bytes"] >= bytes_done
    failed_now = [failure[k] for k, s in state.items() if s == "failed"]
    assert summary["failed_retryable"] == sum(r for _, r in failed_now)
    assert {e["error"]: e["count"] for e in summary["errors"]} == {
        error: [f[0] for f in failed_now].count(error) for error, _ in failed_now}
    recent = [e for e in events[recent_from:] if e["event"] == "completed"]
    if recent_from is not None:
        assert summary["jobs_per_second"] * 600 >= len(recent) * 0.9

    pending = _joblog("pending", log)
    assert pending.returncode == 0 and pending.stderr == b""
    expected = [{k: v for k, v in e.items() if k not in EVENT_FIELDS | {"reason"}}
                for key, e in first_event.items() if state[key] != "completed"]
    assert parse_jsonl(pending.stdout) == expected

    jobs = [{"id": i, **({"file": f} if f else {})} for i, f in first_event]
    skipped = _joblog("skip", log, input=compact(jobs))
    assert skipped.returncode == 0, stderr_text(skipped)
    assert job_keys(parse_jsonl(skipped.stdout)) == [
        k for k in first_event if state[k] != "completed"]


def _joblog(*args, input=b""):
    return run([JOBLOG, *map(str, args)], input=input)
