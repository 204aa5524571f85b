"""ia-joblog's checkpoints: a reading of a big log saves what it learned
beside the log; the next reading starts from there and says the same, and
a checkpoint that no longer fits its log is ignored, never trusted.

Every test runs the real command on a real log of more than
checkpoint.SAVE_AFTER bytes, and judges it by the model of tests/logmodel.
"""

import fcntl
import os
import random
import subprocess
import time

import pytest

from iatools.base import errors
from iatools.base.keyset import KeySet
from iatools.base.lazynumpy import np

from iatools.log import checkpoint, openjobs
from iatools.log.checkpoint import SAVE_AFTER
from iatools.log.completions import Completions
from iatools.log.logindex import REFRESH_GAP, IndexKeeper, refresh
from iatools.log.refresher import cpu_seconds_left
from iatools.log.openjobs import OpenJobs
from tests.helpers import PYTHON, REPO, base_env, parse_jsonl, processes_with, run
from tests.logmodel import (JOBLOG, assert_readings_agree_with_model, big_log, compact, model_of,
                            stderr_text)
from tests.torture import tmpfs

KINDS = ["completed", "pending", "status"]
#: ... and the records of the completions, which status and pending never load.
ALL = sorted(f"{kind}-checkpoint" for kind in KINDS + ["completions"])


def joblog(*args, input=b""):
    return run([JOBLOG, *map(str, args)], input=input)


def checkpoints(log):
    return sorted(p.name.removeprefix(log.name + ".") for p in log.parent.iterdir()
                  if p.name != log.name)


@pytest.fixture
def big(tmp_path):
    """A log of about 11 MB and its events."""
    events = big_log(random.Random(11), 60_000)
    log = tmp_path / "s.jsonl"
    log.write_bytes(compact(events))
    assert log.stat().st_size > SAVE_AFTER
    return log, events


def checkpoints_used(log):
    """The kinds of checkpoint that one status and one pending used."""
    said = ""
    for command in ("status", "pending"):
        result = joblog("-v", command, log)
        assert result.returncode == 0, stderr_text(result)
        said += stderr_text(result)
    return [kind for kind in KINDS if f"{kind}-checkpoint: used" in said]


def test_a_second_reading_starts_from_the_checkpoint_and_agrees(big):
    log, events = big
    assert_readings_agree_with_model(log, events)
    assert checkpoints(log) == ALL
    assert checkpoints_used(log) == KINDS
    assert_readings_agree_with_model(log, events)


def test_pending_reads_afresh_when_the_completed_keys_were(big):
    """The pending checkpoint holds hashes salted as the completed keys
    were: read afresh (a new salt), those do not fit it."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    log.with_name(f"{log.name}.completed-checkpoint").unlink()
    assert checkpoints_used(log) == ["status"]
    assert_readings_agree_with_model(log, events)
    assert checkpoints_used(log) == KINDS


def test_events_appended_after_the_checkpoint_are_read(big):
    log, events = big
    assert_readings_agree_with_model(log, events)
    # More of the same keys, ending with a minute of recent ones.
    more = big_log(random.Random(12), 50_000, recent_from=45_000)
    with open(log, "ab") as f:
        f.write(compact(more))
    assert_readings_agree_with_model(log, events + more, recent_from=len(events) + 45_000)
    # The second reading saved a checkpoint further on; a third agrees too.
    assert checkpoints_used(log) == KINDS
    assert_readings_agree_with_model(log, events + more, recent_from=len(events) + 45_000)


def test_readers_of_the_completed_keys_leave_a_short_tail_to_the_refresh(big):
    """pending and completed fold a tail of less than 64 MB into what their
    checkpoints hold, and save none: saving would index every completion
    and sort every noted key again.  The writers' refresh saves them."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    before = {kind: checkpoint.covered(str(log), kind) for kind in ("completed", "pending")}
    more = big_log(random.Random(13), 50_000)
    with open(log, "ab") as f:
        f.write(compact(more))
    assert len(compact(more)) > SAVE_AFTER
    for command in ("pending", "completed"):
        result = joblog("-v", command, log)
        assert result.returncode == 0, stderr_text(result)
        assert "pending-checkpoint: saved" not in stderr_text(result)
        assert "completed-checkpoint: saved" not in stderr_text(result)
    assert {kind: checkpoint.covered(str(log), kind) for kind in before} == before
    assert_readings_agree_with_model(log, events + more)
    refresh(str(log))
    end = log.stat().st_size
    assert [checkpoint.covered(str(log), kind).offset for kind in KINDS] == [end] * 3
    assert_readings_agree_with_model(log, events + more)


def test_a_few_completions_after_the_checkpoint_close_their_jobs(big):
    """A short tail that completes some of the open jobs: pending looks the
    few completions up among its noted keys (OpenJobs._drop)."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    done = {(e["id"], e.get("file")) for e in events if e["event"] == "completed"}
    still_open = list(dict.fromkeys((e["id"], e.get("file")) for e in events
                                    if (e["id"], e.get("file")) not in done))
    assert len(still_open) >= 12
    template = next(e for e in events if e["event"] == "completed" and "file" not in e)
    more = [dict(template, id=ident, **({"file": file} if file else {}))
            for ident, file in still_open[:3]]
    with open(log, "ab") as f:
        f.write(compact(more))
    assert_readings_agree_with_model(log, events + more)


def test_the_noted_keys_completed_are_told_from_the_others_by_their_top_bits():
    """OpenJobs._drop rules most noted keys out by a table of the top bits
    of the few completed ones, then searches the rest: the same answer as
    a set, at both ends of the hashes' range and where top bits collide."""
    rng = random.Random(14)
    few = sorted({rng.randrange(-1 << 63, 1 << 63) for _ in range(3_000)}
                 | {-1 << 63, (1 << 63) - 1})
    noted = [rng.randrange(-1 << 63, 1 << 63) for _ in range(200_000)]
    noted += few[::3] + [h ^ 1 for h in few[::5]]  # held, and neighbours of the same top bits
    rng.shuffle(noted)
    few_array = np.array(few, np.int64)
    not_among = openjobs._not_among(few_array, openjobs._top_bits_of(few_array),
                                    np.array(noted, np.int64))
    held = set(few)
    assert not_among.tolist() == [h not in held for h in noted]


@pytest.mark.parametrize("completed_count", [3_000, 100_000, 150_000])
def test_the_noted_keys_completed_are_dropped_however_many(completed_count):
    """OpenJobs._drop, three ways: a few keys completed (the top-bits
    table), more than a sixteenth of the table (as a set: the table, nearly
    full, took 4.3 s for 2.3 million), more than a quarter of those noted
    (the noted lines looked up among the completed): each keeps the noted
    keys not completed, in order, with their offsets."""
    rng = random.Random(completed_count)
    noted = list({rng.randrange(-1 << 63, 1 << 63): None for _ in range(400_000)})
    completed = set(rng.sample(noted, completed_count))
    completed |= {rng.randrange(-1 << 63, 1 << 63) for _ in range(1_000)}  # not noted
    jobs = OpenJobs(salt=7)
    jobs._note(np.array(noted, np.int64), np.arange(len(noted), dtype=np.int64) * 100)
    jobs._settle()
    done = KeySet(7)
    done.add(sorted(completed))
    jobs._drop(done)
    kept = [(h, n * 100) for n, h in enumerate(noted) if h not in completed]
    assert list(zip(jobs.hashes, jobs.offsets)) == kept


def tail_event(kind, key, template, **version):
    """An event of ``kind`` for ``key`` as the writers put it (the fast
    path reads it), timed and placed as ``template``."""
    ident, file = key
    return {"event": kind, "id": ident, **({"file": file} if file else {}), **version,
            "ts": template["ts"], "host": "h", "pid": 7, "files": 1, "bytes": 10}


def test_skip_compares_a_job_with_the_latest_completion_after_the_checkpoint(big):
    """A short tail (the checkpoints are not saved again) completes keys
    once more, some with another version, and reopens others: skip
    compares a job with the latest completion, not with the version the
    checkpoint knew."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    state, _, _, _, version, _ = model_of(events)
    keys = [k for k, s in state.items() if s == "completed" and version[k][1] is not None]
    again, damaged = keys[:30], keys[30:40]
    new_versions = [{"size": version[k][0] + (n % 3 == 0),
                     "updated": version[k][1] + "x" * (n % 3 == 1)} for n, k in enumerate(again)]
    more = [tail_event("completed", k, events[-1], **v) for k, v in zip(again, new_versions)]
    more += [tail_event("damaged", k, events[-1], size=version[k][0]) for k in damaged]
    with open(log, "ab") as f:
        f.write(compact(more))
    old_jobs = [{"id": k[0], **({"file": k[1]} if k[1] else {}), "size": version[k][0],
                 "updated": version[k][1]} for k in again + damaged]
    result = joblog("-v", "skip", log, input=compact(old_jobs))
    assert result.returncode == 0, stderr_text(result)
    assert "completed-checkpoint: used" in stderr_text(result)
    passed = [k for n, k in enumerate(again) if n % 3 != 2] + damaged
    assert [(j["id"], j.get("file")) for j in parse_jsonl(result.stdout)] == passed
    with open(log, "r+b") as f:  # without the queued events skip wrote
        f.truncate(len(compact(events + more)))
    assert_readings_agree_with_model(log, events + more)


def test_the_completions_are_read_again_when_their_checkpoint_is_lost(big):
    """skip (for a job of another version) and completed need the records
    of the completions: without their checkpoint, read from the log."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    log.with_name(f"{log.name}.completions-checkpoint").unlink()
    assert_readings_agree_with_model(log, events)


def test_the_completions_of_another_reading_are_not_used(big):
    """Two readers saving at once may leave the records of the completions
    of one beside the completed keys of the other, their hashes salted
    apart: those records are read again from the log."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    records = log.with_name(f"{log.name}.completions-checkpoint")
    other_reading = records.read_bytes()
    for kind in KINDS:
        log.with_name(f"{log.name}.{kind}-checkpoint").unlink()
    assert_readings_agree_with_model(log, events)
    records.write_bytes(other_reading)
    assert_readings_agree_with_model(log, events)


def test_completions_left_behind_their_keys_are_read_on_from_their_checkpoint(big):
    """Two readings that saved at once can leave the records of the
    completions behind the completed keys: the lines in between are read,
    not the whole log."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    records = log.with_name(f"{log.name}.completions-checkpoint")
    behind, behind_at = records.read_bytes(), checkpoint.covered(str(log), "completions")
    more = big_log(random.Random(12), 50_000)
    assert joblog("append", log, input=compact(more)).returncode == 0
    indexed_soon(log, len(events) + len(more))  # (the writer's refresh saves both)
    assert checkpoint.covered(str(log), "completed").offset > behind_at.offset
    records.write_bytes(behind)
    result = joblog("-v", "completed", log)
    assert (f"completions of its checkpoint are read again from line {behind_at.line}"
            in stderr_text(result)), stderr_text(result)
    assert_readings_agree_with_model(log, events + more)


def edit_in_place(log, events):
    """Turn the first completed event into a failure, keeping the log's
    length and inode, as only a hand edit would; the new list of events."""
    data = log.read_bytes()
    at = data.index(b'{"event":"completed"')
    with open(log, "r+b") as f:
        f.seek(at)
        f.write(b'{"event":"failed"   ')
    line = data[:at].count(b"\n")
    edited = dict(events[line], event="failed   ")
    return events[:line] + [edited] + events[line + 1:]


def test_a_log_edited_before_the_checkpoint_is_read_again(big):
    log, events = big
    assert_readings_agree_with_model(log, events)
    events = edit_in_place(log, events)
    assert checkpoints_used(log) == []
    assert_readings_agree_with_model(log, events)


@pytest.mark.parametrize("change", ["shorter", "replaced"])
def test_a_log_cut_short_or_replaced_is_read_again(big, change):
    log, events = big
    assert_readings_agree_with_model(log, events)
    if change == "shorter":
        events = events[:1000]
    else:
        events = big_log(random.Random(13), 60_000)
    os.replace(_written(log.with_name("new"), events), log)
    assert checkpoints_used(log) == []
    assert_readings_agree_with_model(log, events)


def _written(path, events):
    path.write_bytes(compact(events))
    return path


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "empty", "not ours"])
def test_a_damaged_checkpoint_is_ignored_and_replaced(big, damage):
    log, events = big
    assert_readings_agree_with_model(log, events)
    for kind in KINDS:
        path = log.with_name(f"{log.name}.{kind}-checkpoint")
        data = bytearray(path.read_bytes())
        if damage == "flipped byte":
            data[len(data) // 2] ^= 0x40
        elif damage == "cut short":
            del data[-100:]
        elif damage == "empty":
            data = b""
        else:
            data = data.replace(b'"hashes":"', b'"hashes":"other-')
        path.write_bytes(data)
    assert checkpoints_used(log) == []
    assert_readings_agree_with_model(log, events)
    assert checkpoints_used(log) == KINDS


def test_readers_at_once_leave_one_valid_checkpoint(big):
    log, events = big
    readers = [subprocess.Popen([JOBLOG, command, str(log)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
               for command in ("status", "status", "pending", "pending")]
    outputs = [reader.communicate(timeout=120) for reader in readers]
    assert all(reader.returncode == 0 for reader in readers), outputs
    assert outputs[0] == outputs[1] and outputs[2] == outputs[3]
    assert checkpoints(log) == ALL
    assert_readings_agree_with_model(log, events)


def test_no_checkpoint_where_it_would_crowd_the_log(tmp_path):
    """A filesystem with less room than the checkpoint plus KEEP_FREE gets
    none: the log (and the downloads) need the room more."""
    events = big_log(random.Random(11), 60_000)
    with tmpfs(tmp_path / "small", 64 << 20) as disk:
        log = _written(disk / "s.jsonl", events)
        assert_readings_agree_with_model(log, events)
        assert checkpoints(log) == []


def piped(log, *command):
    return subprocess.run(f"cat {log} | {JOBLOG} {' '.join(command)} /dev/stdin", shell=True,
                          capture_output=True, timeout=120)


def test_a_log_read_from_a_pipe_gets_no_checkpoint(big):
    log, _ = big
    status = piped(log, "status", "--json")
    assert status.returncode == 0 and status.stderr == b"", status.stderr
    assert checkpoints(log) == []
    assert timeless(status.stdout) == timeless(joblog("status", "--json", log).stdout)


def timeless(summary):
    """A status --json without what changes from second to second (the big
    log's events are a day old: one reading may still count them in the
    day's rate, and one a minute later not)."""
    (summary,) = parse_jsonl(summary)
    for field in ("last_event_seconds_ago", "rates", "jobs_per_second", "bytes_per_second",
                  "eta_seconds", "eta_bytes_seconds", "eta_window", "history"):
        del summary[field]
    for failure in summary["recent_failures"]:
        del failure["seconds_ago"]
    return summary


@pytest.mark.parametrize("command", ["pending", "failed", "completed"])
def test_commands_that_read_the_log_twice_refuse_a_pipe(big, command):
    log, _ = big
    result = piped(log, command)
    assert result.returncode == 2 and result.stdout == b""
    assert "cannot read log /dev/stdin twice" in stderr_text(result)


def test_status_by_field_reads_the_whole_log(big):
    """A checkpoint keeps no groups: --by reads everything, and agrees."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    by_batch = joblog("-v", "status", "--json", "--by", "batch", log)
    assert by_batch.returncode == 0 and "checkpoint: used" not in stderr_text(by_batch)
    (summary,) = parse_jsonl(by_batch.stdout)
    assert sum(g["total"] for g in summary["by"]["groups"].values()) == summary["total"]
    assert summary["total"] == len({(e["id"], e.get("file")) for e in events})


def saved_at(log, kind, offset):
    """Save a checkpoint of ``kind`` (payload: its kind) covering the log's
    first ``offset`` bytes; the Position it covers."""
    data = log.read_bytes()[:offset]
    position = checkpoint.START.after(data, data.count(b"\n"))
    checkpoint.save(str(log), kind, position, 100, lambda writer: writer.blob(kind.encode()))
    return position


@pytest.mark.parametrize("order", [("short", "long"), ("long", "short")])
def test_two_checkpoints_of_one_log_are_checked_in_either_order(tmp_path, order):
    """In one process, a second checkpoint is checked from where the first
    one ended (pending reads two): at any offset, in either order."""
    log = tmp_path / "s.jsonl"
    log.write_bytes(os.urandom(SAVE_AFTER + 50_001))
    ends = {"short": saved_at(log, "short", 4_097 + 13),
            "long": saved_at(log, "long", SAVE_AFTER + 7)}
    for kind in order:
        position, payload = checkpoint.load(str(log), kind, lambda reader: reader.blob())
        assert (position, payload) == (ends[kind], kind.encode())


def test_a_change_between_two_checkpoints_fails_only_the_longer(tmp_path):
    log = tmp_path / "s.jsonl"
    log.write_bytes(os.urandom(SAVE_AFTER + 50_001))
    short = saved_at(log, "short", 100_003)
    saved_at(log, "long", SAVE_AFTER)
    with open(log, "r+b") as f:
        f.seek(200_000)
        f.write(b"x")
    assert checkpoint.load(str(log), "short", lambda reader: reader.blob())[0] == short
    assert checkpoint.load(str(log), "long", lambda reader: reader.blob()) == (
        checkpoint.START, None)


def test_a_checkpoint_is_not_set_back_by_a_reading_that_began_before_it(tmp_path):
    """A refresh held back behind the readings typed meanwhile saves what
    it read after they saved further on: theirs stay, in the same epoch."""
    events = big_log(random.Random(5), 2_000)
    log = tmp_path / "s.jsonl"
    assert joblog("append", log, input=compact(events)).returncode == 0
    epoch = checkpoint.current_epoch(str(log))
    data = log.read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1

    def save(offset, payload, epoch):
        position = checkpoint.START.after(data[:offset], data[:offset].count(b"\n"))
        checkpoint.save(str(log), "status", position, 100,
                        lambda writer: writer.blob(payload), epoch)
        return checkpoint.load(str(log), "status", lambda reader: reader.blob())

    assert epoch is not None
    assert save(half, b"half", epoch)[1] == b"half"
    further = save(len(data), b"all", epoch)
    assert further[1] == b"all"
    assert save(half, b"half again", epoch) == further
    assert save(half, b"half, another epoch", epoch + 1)[1] == b"half, another epoch"


def indexed_soon(log, lines):
    """Wait for the child a writer left to bring every checkpoint up to
    the end of its ``lines`` lines."""
    deadline = time.monotonic() + 120
    while any(getattr(checkpoint.covered(str(log), kind), "line", 0) != lines + 1
              for kind in KINDS):
        assert time.monotonic() < deadline, [checkpoint.covered(str(log), k) for k in KINDS]
        time.sleep(0.2)


@pytest.mark.parametrize("writer", ["append", "tee"])
def test_the_writer_leaves_checkpoints_that_cover_all_it_wrote(tmp_path, writer):
    """A reader after a writer parses nothing the writer wrote, however
    recent (every event here is of the last minute)."""
    events = big_log(random.Random(13), 60_000, recent_from=0)
    log = tmp_path / "s.jsonl"
    result = joblog(writer, log, input=compact(events))
    assert result.returncode == 0, stderr_text(result)
    lines = len(events)
    indexed_soon(log, lines)
    assert checkpoints(log) == sorted(ALL + ["refresh-lock", "stamp-checkpoint"])
    for command, kinds in (("status", ["status"]), ("pending", ["completed", "pending"]),
                           ("completed", ["completed"])):
        result = joblog("-v", command, log)
        assert result.returncode == 0
        for kind in kinds:
            assert (f"{kind}-checkpoint: used; reading the log from line {lines + 1}"
                    in stderr_text(result)), (kind, stderr_text(result))
    assert_readings_agree_with_model(log, events, recent_from=0)


@pytest.fixture
def written(tmp_path):
    """A log of about 11 MB written by ia-joblog append, read once (its
    checkpoints saved), and its events."""
    events = big_log(random.Random(11), 60_000)
    log = tmp_path / "s.jsonl"
    result = joblog("append", log, input=compact(events))
    assert result.returncode == 0, stderr_text(result)
    indexed_soon(log, len(events))
    assert_readings_agree_with_model(log, events)
    return log, events


def checked_by_crc(log):
    """Did a status reading check its checkpoint by reading the log?"""
    result = joblog("-v", "status", log)
    assert "status-checkpoint: used" in stderr_text(result), stderr_text(result)
    return "the log was read to check it" in stderr_text(result)


def test_a_log_as_its_writers_left_it_is_not_read_to_check_a_checkpoint(written):
    log, events = written
    assert not checked_by_crc(log)
    more = big_log(random.Random(12), 100)
    assert joblog("append", log, input=compact(more)).returncode == 0
    assert not checked_by_crc(log)
    assert_readings_agree_with_model(log, events + more)


def test_a_write_by_another_program_makes_the_checkpoints_checked(written):
    log, events = written
    more = big_log(random.Random(12), 100)
    with open(log, "ab") as f:
        f.write(compact(more))
    assert checked_by_crc(log)
    assert_readings_agree_with_model(log, events + more)


@pytest.mark.parametrize("then_append", [False, True])
def test_an_edit_in_place_is_seen_even_after_an_append(written, then_append):
    """An edit keeps the log's inode and length; the writer that comes after
    it finds the log not as the stamp says and begins a new epoch."""
    log, events = written
    events = edit_in_place(log, events)
    if then_append:
        more = big_log(random.Random(12), 100)
        assert joblog("append", log, input=compact(more)).returncode == 0
        events += more
    assert checkpoints_used(log) == []
    assert_readings_agree_with_model(log, events)


def test_skip_leaves_a_child_to_index_what_it_queued(tmp_path):
    """skip into a log that holds events already exits without waiting for
    the index of its queued events, and the child it leaves behind brings
    the checkpoints up to date."""
    jobs = b"".join(b'{"id":"item-%07d_x","size":%d}\n' % (n, n) for n in range(80_000))
    log = tmp_path / "s.jsonl"
    log.write_bytes(b'{"event":"queued","id":"before","size":0}\n')
    result = joblog("skip", log, input=jobs)
    assert result.returncode == 0, stderr_text(result)
    assert result.stdout == jobs
    assert log.stat().st_size > SAVE_AFTER
    lines = 1 + jobs.count(b"\n")
    indexed_soon(log, lines)
    status = joblog("-v", "status", "--json", log)
    assert f"reading the log from line {lines + 1}" in stderr_text(status)
    assert "the log was read to check it" not in stderr_text(status)
    (summary,) = parse_jsonl(status.stdout)
    assert (summary["total"], summary["pending"]) == (lines, lines)
    assert summary["remaining_bytes"] == sum(range(80_000))


def test_skip_into_a_new_log_saves_the_status_checkpoint_as_it_exits(tmp_path):
    """status right after skip into a new log parses nothing: skip saved the
    status checkpoint of what it queued, and it says what a reading from
    the log's start says -- keys given twice (the later size counts), jobs
    without a size, jobs the full parser reads, a bad line left out."""
    jobs = [b'{"id":"item-%07d_x","size":%d}\n' % (n, n) for n in range(80_000)]
    again = list(range(0, 80_000, 97))
    jobs += [b'{"id":"item-%07d_x","size":5}\n' % n for n in again]
    jobs += [b'{"id":"nosize-%05d"}\n' % n for n in range(300)]
    jobs += [b'{ "id": "spaced-%05d", "size": 7 }\n' % n for n in range(300)]
    jobs.insert(40_000, b"not a job\n")
    log = tmp_path / "s.jsonl"
    result = joblog("-v", "skip", log, input=b"".join(jobs))
    assert result.returncode == 1, stderr_text(result)
    assert "line 40001" in stderr_text(result)
    lines = len(jobs) - 1
    assert f"status-checkpoint: saved, up to line {lines + 1}" in stderr_text(result)
    assert "leaves its pending checkpoint to the refresh (a job queued twice)" \
        in stderr_text(result)

    def status():
        result = joblog("-v", "status", "--json", log)
        assert result.returncode == 0, stderr_text(result)
        (summary,) = parse_jsonl(result.stdout)
        return stderr_text(result), {k: summary[k] for k in (
            "total", "pending", "completed", "failed", "remaining_jobs", "remaining_bytes")}

    said, right_after = status()
    assert f"status-checkpoint: used; reading the log from line {lines + 1}" in said
    total = 80_000 + 300 + 300
    assert right_after == {
        "total": total, "pending": total, "completed": 0, "failed": 0, "remaining_jobs": total,
        "remaining_bytes": sum(range(80_000)) - sum(again) + 5 * len(again) + 7 * 300}
    indexed_soon(log, lines)  # (the refresh skip leaves must not race the next reading)
    os.unlink(checkpoint.path_for(str(log), "status"))
    said, from_the_start = status()
    assert "status-checkpoint: used" not in said
    assert from_the_start == right_after


def test_skip_into_a_new_log_saves_every_checkpoint_and_leaves_no_refresh(tmp_path):
    """Each job queued once: skip saves the completed and pending
    checkpoints too, so that pending right after it parses nothing and
    prints what a reading from the start prints, and no refresh is left to
    compete with the readings."""
    jobs = b"".join(b'{"id":"item-%07d_x","size":%d}\n' % (n, n) for n in range(80_000))
    jobs += b"".join(b'{"id":"item","file":"f/%05d.txt"}\n' % n for n in range(300))
    log = tmp_path / "s.jsonl"
    result = joblog("-v", "skip", log, input=jobs)
    assert result.returncode == 0, stderr_text(result)
    lines = jobs.count(b"\n")
    said = stderr_text(result)
    for kind in ALL:
        assert f"{kind}: saved, up to line {lines + 1}" in said
    assert checkpoints(log) == sorted(ALL + ["stamp-checkpoint"])  # (no refresh-lock: none started)
    right_after = joblog("-v", "pending", log)
    assert right_after.returncode == 0, stderr_text(right_after)
    for kind in ("completed", "pending"):
        assert f"{kind}-checkpoint: used; reading the log from line {lines + 1}" \
            in stderr_text(right_after)
    assert right_after.stdout == jobs
    assert joblog("completed", log).stdout == b""
    for kind in ALL:
        os.unlink(checkpoint.path_for(str(log), kind.removesuffix("-checkpoint")))
    from_the_start = joblog("-v", "pending", log)
    assert "checkpoint: used" not in stderr_text(from_the_start)
    assert from_the_start.stdout == jobs


def test_pending_reads_no_further_than_the_completed_keys_it_was_given(big):
    """The log grows while it is read (a refresh or a reading during a
    run): keys completed past the end of the completed keys must not be
    noted, and saved, as open."""
    log, events = big
    state, end = Completions.read(str(log))
    done = {(e["id"], e.get("file")) for e in events if e["event"] == "completed"}
    template = next(e for e in events if e["event"] == "completed" and "file" not in e)
    more = [dict(template, id=ident) for ident, file in
            dict.fromkeys((e["id"], e.get("file")) for e in events) if file is None
            and (ident, None) not in done][:50]
    assert len(more) == 50
    with open(log, "ab") as f:
        f.write(compact(more))
    OpenJobs.read(str(log), state.done, end)
    assert checkpoint.covered(str(log), "pending") == end
    assert_readings_agree_with_model(log, events + more)


def test_pending_uses_no_completed_keys_of_a_log_cut_back_since(tmp_path):
    """A refresh that read the completed keys of the whole log, then found
    it cut back and its checkpoints put back as they were (a snapshot
    restored, as J1 does between its phases): judged by completions the
    log no longer holds, the open jobs would be saved without those
    completed later, and every pending after would leave them out (J1,
    02:32 on 2026-12-08: 3,000,000 printed of 5,185,592)."""
    log = tmp_path / "s.jsonl"
    events = big_log(random.Random(11), 120_000)
    half = events[:len(events) // 2]
    log.write_bytes(compact(half))
    Completions.read(str(log))
    snapshot = {path: path.read_bytes() for path in tmp_path.iterdir() if path != log}
    assert len(snapshot) == 2  # (the completed keys and their records, at the half)
    with open(log, "ab") as f:
        f.write(compact(events[len(half):]))
    state, end = Completions.read(str(log))
    log.write_bytes(compact(half))  # (in place: the same file, cut back)
    for path, data in snapshot.items():
        path.write_bytes(data)
    with pytest.raises(errors.IatoolsError, match="cut short while being read"):
        OpenJobs.read(str(log), state.done, end, refresh=True)
    assert checkpoint.covered(str(log), "pending") is None
    assert_readings_agree_with_model(log, half)


def test_completions_read_on_from_their_checkpoint_stop_at_a_log_cut_back(big):
    """The records of the completions behind the completed keys are read on
    up to the keys; a log cut back meanwhile has lost some of those lines:
    the completed jobs printed would miss them."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    records = log.with_name(f"{log.name}.completions-checkpoint")
    behind = records.read_bytes()
    more = big_log(random.Random(14), 50_000)
    assert joblog("append", log, input=compact(more)).returncode == 0
    indexed_soon(log, len(events) + len(more))
    records.write_bytes(behind)
    state, _ = Completions.read(str(log), tagged=False)
    log.write_bytes(compact(events + more[:10]))
    with pytest.raises(errors.IatoolsError, match="cut short while being read"):
        state.completed_offsets()


def test_status_counts_every_event_of_a_log_growing_as_it_reads(big):
    """ia-joblog append writes 18 MB of new jobs, each queued then
    completed, in small steps for a few seconds, while status reads again
    and again from its checkpoint (and append's refreshes do too): each
    saves counts for exactly the events it folded, so the counts stay true
    once the writing stops."""
    log, events = big
    assert_readings_agree_with_model(log, events)
    template = {"ts": events[-1]["ts"], "host": "h", "pid": 7}
    more = []
    for n in range(16_000):
        job = {"id": f"grown-{n:06d}", "pad": "x" * 500}
        more += [{"event": "queued", **job, "size": 1, **template},
                 {"event": "completed", **job, **template, "files": 1, "bytes": 10}]
    feed = log.parent / "more.jsonl"
    feed.write_bytes(compact(more))
    slowly = ("import sys, time\n"
              "lines = open(sys.argv[1], 'rb').readlines()\n"
              "for n in range(0, len(lines), 250):\n"
              "    sys.stdout.buffer.write(b''.join(lines[n:n + 250])); sys.stdout.flush()\n"
              "    time.sleep(0.02)\n")
    feeder = subprocess.Popen([PYTHON, "-c", slowly, str(feed)], stdout=subprocess.PIPE)
    append = subprocess.Popen([JOBLOG, "append", str(log)], stdin=feeder.stdout)
    feeder.stdout.close()
    readings = 0
    while append.poll() is None:
        assert joblog("status", "--json", log).returncode == 0
        readings += 1
    assert append.returncode == 0 and feeder.wait() == 0 and readings >= 3
    assert_readings_agree_with_model(log, events + more)


def test_a_refresh_runs_behind_everything_else_in_its_own_session(tmp_path):
    """The refresh is niced, and so is its session's autogroup where the
    system has them: there the scheduler shares the cores between sessions
    first, whatever the nice values, and a reading typed meanwhile took
    half again as long."""
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"event":"queued","id":"a"}\n')
    lock = open(f"{log}.refresh-lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # the refresh waits for it
    try:
        subprocess.run([PYTHON, "-m", "iatools.log.refresher", str(log)], check=True,
                       env=base_env(PYTHONPATH=str(REPO)), start_new_session=True, timeout=30)
        deadline = time.monotonic() + 10
        while not (waiting := processes_with(f"iatools.log.refresher {log}")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pid, = waiting
        with open(f"/proc/{pid}/stat") as stat:
            assert int(stat.read().rpartition(")")[2].split()[16]) == 19  # nice
        if os.path.exists(f"/proc/{pid}/autogroup"):
            with open(f"/proc/{pid}/autogroup") as autogroup:
                assert autogroup.read().rstrip().endswith("nice 19")
    finally:
        lock.close()


def test_a_refresh_held_back_does_not_put_off_the_next(big):
    """The writer waits twice the CPU time of the last refresh before the
    next, not twice its wall time: niced, a refresh may wait long behind
    the readings typed meanwhile (here, for its lock), and the next must
    not wait as long again."""
    log, _ = big
    lock = open(f"{log}.refresh-lock", "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    keeper = IndexKeeper(str(log))
    began = time.monotonic()
    try:
        keeper.wrote(SAVE_AFTER)  # a refresh, which waits for the lock
        time.sleep(REFRESH_GAP / 2 + 1)
    finally:
        lock.close()
    deadline = time.monotonic() + 60
    # (Done once it has left its CPU seconds and let go of the lock: niced,
    # it may not even have taken the lock yet when the test lets it go.)
    while (took := cpu_seconds_left(str(log))) is None or refresh_running(log):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert 0 < took < REFRESH_GAP / 2, took
    time.sleep(max(0.0, began + REFRESH_GAP + 0.5 - time.monotonic()))
    keeper.wrote(SAVE_AFTER)
    assert refresh_running(log)  # (it holds its lock before the writer goes on)


def refresh_running(log):
    with open(f"{log}.refresh-lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
