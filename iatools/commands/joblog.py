"""ia-joblog: record events in an append-only log; resume and report from it."""

import argparse
import os
import sys

from iatools.base import errors, signals
from iatools.base.forkedmap import computed_ahead
from iatools.base.sizes import duration_argument
from iatools.base.status import ExitStatus
from iatools.contract import cli, jsonl
from iatools.contract.linegrammar import EVENT_START, parse_event, recordable_chunk
from iatools.fetching.locks import DEFAULT_TIMEOUT, LOCK_SUFFIX, lock_state, remove_lock
from iatools.log import logreport
from iatools.log.completions import Completions
from iatools.log.eventlog import LogWriter, check_existing, check_rereadable
from iatools.log.joblog import JobLog
from iatools.log.logindex import IndexKeeper
from iatools.log.queuedindex import QueuedIndex
from iatools.log.skipjudge import SkipJudge

PROG = "ia-joblog"
DESCRIPTION = """\
Record iatools events in an append-only JSONL log (LOG), let a re-run skip
what is already done, and report progress.  Jobs are matched by key: "id",
or "id" and "file" for a file-level job, never by position."""
EPILOG = """\
commands:
  append LOG    append the events read on stdin to LOG
  tee LOG       like append, and copy the events to stdout
  skip LOG      pass on the jobs from stdin that have not completed in LOG,
                or whose item changed upstream since, recording each as
                queued; drop the jobs failed for good (not retryable)
  pending LOG   print the jobs recorded in LOG that have not completed
  failed LOG    print the jobs whose latest outcome in LOG is a failure,
                with the error
  completed LOG print the jobs completed (or verified) in LOG
  status LOG    summarise LOG: totals, what is left, rates, ETAs, the last
                day hour by hour, failures (--watch: again and again)
  locks DIR...  list ia-fetch's item locks under the destdirs DIR (--clear:
                remove the stale ones)

example:
  ia-resolve --search 'collection:x' | ia-joblog skip s.jsonl \\
    | ia-fetch -j 8 | ia-joblog append s.jsonl
  ia-joblog status s.jsonl
  ia-joblog completed s.jsonl | ia-verify -j 4 | ia-joblog append s.jsonl

See ia-joblog(1) and iatools(7)."""


def build_parser():
    parser = cli.make_parser(PROG, DESCRIPTION, EPILOG)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in (
        ("append", "append the events read on stdin to LOG"),
        ("tee", "append the events read on stdin to LOG and copy them to stdout"),
        ("skip", "pass on jobs not completed in LOG, recording them as queued"),
        ("pending", "print the jobs recorded in LOG that have not completed"),
        ("failed", "print the jobs whose latest outcome in LOG is a failure"),
        ("completed", "print the jobs completed or verified in LOG"),
        ("status", "summarise LOG"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("log", metavar="LOG", help="the event log (JSONL)")
        cli.add_verbosity(command, subcommand=True)
        if name == "skip":
            command.add_argument("--retry-permanent", action="store_true",
                                 help='pass on the jobs whose latest outcome is a failure '
                                      'that is not retryable ("retryable": false) too')
        if name == "failed":
            which = command.add_mutually_exclusive_group()
            which.add_argument("--retryable", action="store_true",
                               help="print only the failures worth trying again")
            which.add_argument("--permanent", action="store_true",
                               help='print only the failures not retryable ("retryable": false)')
        if name == "status":
            command.add_argument("--json", action="store_true",
                                 help="print one JSON object instead of a table")
            command.add_argument("--by", metavar="FIELD",
                                 help="break the counts down by the job field FIELD")
            command.add_argument("--watch", nargs="?", const=2.0, type=_interval,
                                 metavar="SECONDS",
                                 help="show the summary again every SECONDS (default 2), "
                                      "in place on a terminal, until interrupted")
    _add_locks_command(commands)
    return parser


def _add_locks_command(commands):
    summary = "list the item locks ia-fetch holds or left under destdirs"
    command = commands.add_parser("locks", help=summary, description=summary)
    command.add_argument("destdirs", nargs="+", metavar="DIR", help="a destdir of ia-fetch")
    command.add_argument("--clear", action="store_true",
                         help="remove the stale locks (owner gone, or not refreshed for "
                              "--lock-timeout)")
    command.add_argument("--lock-timeout", type=duration_argument, default=DEFAULT_TIMEOUT,
                         metavar="DURATION",
                         help="a lock not refreshed for this long is stale (default: 1h, "
                              "as ia-fetch)")
    cli.add_verbosity(command, subcommand=True)


def _interval(text):
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(
            f"not a number of seconds above 0: {text!r} (without SECONDS, put --watch after LOG)")
    return seconds


def main(argv=None, streams=None):
    return cli.run(build_parser(), _dispatch, argv, streams)


def _dispatch(args):
    command = COMMANDS[args.command]
    if args.command not in ("append", "tee"):
        signals.interrupt_on_stop_signals()
    if args.command in ("pending", "failed", "completed"):
        check_existing(args.log)
        check_rereadable(args.log)
    return command(args)


def _open_log(path):
    try:
        return LogWriter(path)
    except OSError as exc:
        raise errors.UsageError(f"cannot open log {path}: {exc.strerror}") from None


def append(args, copy_to_stdout=False):
    """Record events; on Ctrl-C or SIGTERM go on until the input ends, since
    the whole pipeline got the signal and its last events are on their way."""
    drain = signals.DrainUntilEndOfInput().install()
    jsonl.warn_if_terminal(args.streams.stdin_is_terminal, "events")
    log = _open_log(args.log)
    index = IndexKeeper(args.log)
    output = jsonl.Output(args.streams.stdout) if copy_to_stdout else None
    events = jsonl.RecordReader(args.streams.stdin, _recordable)
    try:
        for first, lines, data in jsonl.whole_lines(args.streams.stdin, what="events"):
            if not lines:  # the last line, without its newline
                data, lines = data + b"\n", 1
            if not recordable_chunk(data):
                data = b"".join(events.records(enumerate(jsonl.split_lines(data), first)))
            _write_log(log, [data] if data else [])
            if output is not None:
                output.lines([data])
                output.flush()
            index.wrote(len(data))
    finally:
        log.close()
    if drain.received:
        return ExitStatus.INTERRUPTED
    index.leave()
    return ExitStatus.FAILED if events.bad_lines else ExitStatus.OK


def _recordable(line_number, line):
    """The line of an event, as the log records it; BadLine for any other
    line, keeping a whole event glued after a torn one."""
    try:
        _parse_event(line)
    except jsonl.BadLine as exc:
        kept = _event_after_tear(line_number, line)
        exc.kept = None if kept is None else kept + b"\n"
        raise
    return line + b"\n"


def _parse_event(line):
    return parse_event(line, 'not an event (no "event" field): record events, not jobs')


def _event_after_tear(line_number, line):
    """A whole event glued after a torn one, or None.  GNU parallel prints
    the unterminated last line of a job that died (its ssh killed) as it
    is, so the next line of another job is glued to it: keep that line."""
    start = line.find(EVENT_START, 1)
    while start > 0:
        try:
            _parse_event(line[start:])
        except jsonl.BadLine:
            start = line.find(EVENT_START, start + 1)
            continue
        errors.warning(f"input line {line_number}: kept the whole event from byte {start + 1}")
        return line[start:]
    return None


def _write_log(log, lines):
    """Append the lines; the offset where they begin (None for none)."""
    try:
        return log.append(lines)
    except OSError as exc:
        raise errors.IatoolsError(f"cannot write to log {log.path}: {exc.strerror}") from None


def tee(args):
    return append(args, copy_to_stdout=True)


def skip(args):
    state, _ = Completions.read(args.log)
    jsonl.warn_if_terminal(args.streams.stdin_is_terminal, "jobs")
    status_index = QueuedIndex.for_new_log(args.log, state.done.salt)
    log = _open_log(args.log)
    index = IndexKeeper(args.log, while_writing=False)
    output = jsonl.Output(args.streams.stdout)
    judge = SkipJudge(state, args.retry_permanent, noting=status_index is not None)
    # The keys are cut out of the jobs and hashed by a child, which reads
    # them, while the jobs before are looked up and written here: skip of
    # ten million jobs is bound by the interpreter, and there are two cores.
    chunks = computed_ahead(judge.read_ahead, jsonl.whole_lines(
        args.streams.stdin, what="jobs"))
    counting = False  # a total was announced upstream: announce what is dropped
    try:
        for first, lines, data, cut in chunks:
            counts = jsonl.count_lines(data)
            counting = counting or bool(counts)
            dropped_before = judge.dropped()
            queued, passing = judge.judge_chunk(first, lines, data, cut)
            # Log first: a job must never run downstream without its queued
            # event on record.
            offset = _write_log(log, queued)
            index.wrote(sum(map(len, queued)))
            if status_index is not None:
                _note_queued(status_index, offset, queued, judge.take_queued())
            if counting and judge.dropped() > dropped_before:
                counts.append(jsonl.count_line("skipped", judge.dropped() - dropped_before))
            output.lines(counts + passing)
            output.flush()
    except BaseException:
        if status_index is not None:
            status_index.close()  # (no save: the run was cut short)
        raise
    finally:
        chunks.close()
        log.close()
    if status_index is None or not status_index.save(log.epoch):
        index.leave()
    errors.debug(f"skip: {judge.summary()}")
    return ExitStatus.FAILED if judge.bad_lines else ExitStatus.OK


def _note_queued(status_index, offset, events, queued):
    if queued is None:
        status_index.give_up("an event that reopens a key")
    else:
        status_index.wrote(offset, events, *queued)


def pending(args):
    """Each key not completed, as the job of its first event, in log order."""
    return _print(args, JobLog(args.log).pending_lines())


def _print(args, batches):
    """Write batches of JSONL lines to stdout."""
    output = jsonl.Output(args.streams.stdout)
    for lines in batches:
        output.lines([lines])
    output.flush()
    return ExitStatus.OK


def failed(args):
    """The latest failed event of each key failed now, as its job and why."""
    wanted = True if args.retryable else False if args.permanent else None
    output = jsonl.Output(args.streams.stdout)
    for job in JobLog(args.log).failed(retryable=wanted):
        output.record(job)
    output.flush()
    return ExitStatus.OK


def completed(args):
    """The latest completed or verified event of each key completed now, as
    its job (with the version it recorded), in log order."""
    return _print(args, JobLog(args.log).completed_lines())


def locks(args):
    """One line per lock: the item, its owner, whether it is stale."""
    output = jsonl.Output(args.streams.stdout)
    for destdir in args.destdirs:
        if not os.path.isdir(destdir):
            raise errors.UsageError(f"{destdir}: not a directory")
        for path in _lock_files(destdir):
            owner, stale = lock_state(path, args.lock_timeout)
            identifier = os.path.basename(path)[1:-len(LOCK_SUFFIX)]
            cleared = args.clear and stale and _remove_lock(path)
            output.record({"lock": path, "id": identifier, "owner": owner, "stale": stale,
                           "cleared": cleared})
    output.flush()
    return ExitStatus.OK


def _lock_files(destdir):
    with os.scandir(destdir) as entries:
        return sorted(e.path for e in entries
                      if e.name.startswith(".") and e.name.endswith(LOCK_SUFFIX)
                      and e.is_file(follow_symlinks=False))


def _remove_lock(path):
    try:
        remove_lock(path)
    except OSError as exc:
        errors.error(f"cannot remove {path}: {exc.strerror}")
        return False
    return True


def status(args):
    check_existing(args.log)
    unicode = logreport.unicode_terminal(args.streams.environ)
    if args.watch is None:
        logreport.show(args.log, args.by, args.json, unicode, args.streams)
        return ExitStatus.OK
    try:
        logreport.watch(args.log, args.by, args.json, unicode, args.watch, args.streams)
    except KeyboardInterrupt:  # the way a watch ends, as watch(1)'s does
        pass
    return ExitStatus.OK


COMMANDS = {"append": append, "tee": tee, "skip": skip, "pending": pending,
            "failed": failed, "completed": completed, "status": status, "locks": locks}

if __name__ == "__main__":
    sys.exit(main())
