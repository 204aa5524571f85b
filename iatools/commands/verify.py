"""ia-verify: check items on disk against fresh metadata, without a body.

Threads: the main thread reads jobs; N item workers each fetch an item's
metadata (with their own keep-alive connection) and check its files; md5s
are computed by a pool of hashing threads, one file each (hashlib releases
the GIL, so they use every core); one writer alone writes events to stdout
and draws the progress line.
"""

import hashlib
import os
import queue
import stat
import sys
import threading
import time
import traceback
from concurrent.futures import Future

from iatools.base import errors, signals
from iatools.base.sizes import format_size
from iatools.base.status import ExitStatus
from iatools.contract import cli, jsonl
from iatools.contract.eventwriter import EventWriter
from iatools.contract.jobs import job_of_line, make_event
from iatools.fetching import session
from iatools.fetching.hostpacing import HostPacing
from iatools.fetching.http import Connection, FetchError, RetryPolicy
from iatools.fetching.localtree import unlisted_files
from iatools.fetching.progress import fit, terminal_size
from iatools.fetching.selection import (add_selection_options, add_version, fetch_metadata,
                                        filters_from_args, listed_names, plan_files)
from iatools.fetching.settings import check_run_options

PROG = "ia-verify"
DESCRIPTION = """\
Check the items (or files) named by JSONL jobs on stdin against fresh
metadata, without downloading any body: every selected file present in
DESTDIR/IDENTIFIER/NAME, of the listed size, and of the listed md5 where the
metadata has a trustworthy one.  Writes one event per job on stdout:
"verified", or "damaged" with the files missing, of the wrong size or md5.
Fed to "ia-joblog append", a damaged job counts as not completed, so the
next run of the pipeline fetches exactly those files again."""
EPILOG = """\
examples:
  ia-joblog completed s.jsonl | ia-verify -j 4 | ia-joblog append s.jsonl
  ia-resolve nasa | ia-verify -d /data --glob '*.jpg'

DESTDIR is the job's "destdir" field, else --destdir, else the current
directory.  See ia-verify(1) and iatools(7)."""
#: Bytes read at a time: large enough that the system calls cost nothing
#: next to the md5 (about 1.5 ms of hashing per MiB).
CHUNK_SIZE = 4 << 20


def build_parser():
    parser = cli.make_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument("-j", "--jobs", type=int, default=4, metavar="N",
                        help="items checked at once, each with its own connection for its "
                             "metadata request (default: %(default)s)")
    parser.add_argument("--hash-jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="files read and hashed at once (default: the number of CPUs, "
                             "%(default)s here)")
    parser.add_argument("-d", "--destdir", metavar="DIR",
                        help="where the item directories are when a job has no destdir "
                             "(default: the current directory)")
    add_selection_options(parser)
    parser.add_argument("--retries", type=int, default=5, metavar="N",
                        help="retries of each metadata request on transient errors "
                             "(default: %(default)s)")
    session.add_session_options(parser)
    return parser


def main(argv=None, streams=None):
    """Run ia-verify with ``argv`` on ``streams`` (cli.Streams); the exit status."""
    return cli.run(build_parser(), _verify, argv, streams)


def _verify(args):
    check_run_options(args)
    if args.hash_jobs < 1:
        raise errors.UsageError("--hash-jobs must be at least 1")
    archive_session = session.build_session(args)  # a bad config fails here, before any job
    signals.interrupt_on_stop_signals()
    jsonl.warn_if_terminal(args.streams.stdin_is_terminal, "jobs")
    return _Audit(args, archive_session).run()


class _Threads:
    """Daemon threads running submitted calls.  Not a ThreadPoolExecutor:
    its threads are joined at exit, and Ctrl-C would wait for the md5 of
    every large file being read."""

    def __init__(self, count, name, backlog=0):
        self.tasks = queue.Queue(backlog)
        self.threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                        for i in range(count)]
        for thread in self.threads:
            thread.start()

    def submit(self, function, *args):
        """A Future of ``function(*args)``; blocks while the backlog is full."""
        future = Future()
        self.tasks.put((future, function, args))
        return future

    def join(self):
        """Run what was submitted, then end the threads."""
        for _ in self.threads:
            self.tasks.put(None)
        for thread in self.threads:
            thread.join()

    def _work(self):
        while (task := self.tasks.get()) is not None:
            future, function, args = task
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)


class _Audit:
    def __init__(self, args, archive_session):
        self.args = args
        self.session = archive_session
        self.base_url = session.base_url(archive_session)
        self.client = session.client_settings(archive_session, args.timeout)
        self.filters = filters_from_args(args)
        self.pacing = HostPacing(args.jobs)
        self.thread_connections = threading.local()  # each item thread its own
        self.default_destdir = os.path.abspath(args.destdir or os.getcwd())
        self.events = queue.SimpleQueue()
        self.streams = args.streams
        self.progress = _Progress(self.streams.stderr,
                                  live=not args.quiet and self.streams.stderr_is_terminal)
        self.not_verified = 0
        self.writer = EventWriter(self.streams.stdout, self._tally)

    def run(self):
        self.writer.start(self._events())
        self.hashers = _Threads(self.args.hash_jobs, "md5")
        items = _Threads(self.args.jobs, "item", backlog=2 * self.args.jobs)
        reader = jsonl.RecordReader(self.streams.stdin, self._job, what="jobs")
        input_error = self._submit_jobs(reader, items)
        items.join()
        self.events.put(None)
        self.writer.join()
        if output_status := self.writer.output_status():
            return output_status
        if input_error is not None:  # raised once the jobs read before it are told
            raise input_error
        return ExitStatus.FAILED if reader.bad_lines or self.not_verified else ExitStatus.OK

    def _submit_jobs(self, reader, items):
        """Hand the jobs read to the item workers until the input ends, or
        the output; the StreamError of an input that could not be read."""
        try:
            for jobs in reader.batches():
                for job in jobs:
                    items.submit(self._check_job, job)
                if self.writer.lost:
                    break
        except jsonl.StreamError as exc:
            return exc
        return None

    def _job(self, line_number, line):
        return job_of_line(line_number, line, self.default_destdir, self.events.put)

    # -- item workers ---------------------------------------------------------
    def _check_job(self, job):
        try:
            self._check(job)
        except Exception:  # a bug: say so, and let the job be checked again
            errors.error(f"internal error checking {job['id']}:\n" + traceback.format_exc())
            self.events.put(make_event("failed", job, error="internal error (see stderr)",
                                       retryable=True))

    def _check(self, job):
        try:
            plans, listed = self._plan(job)
        except FetchError as error:
            details = {"error": str(error), "retryable": error.retryable}
            if error.http_status:
                details["http_status"] = error.http_status
            return self.events.put(make_event("failed", job, **details))
        findings, checked = self._check_files(plans)
        extra = self._extra(job, listed)
        details = {"files": len(plans), "bytes": checked}
        if any(findings.values()):
            return self.events.put(make_event("damaged", job, **details, **findings, files_extra=extra))
        if extra:
            details["files_extra"] = extra
        self.events.put(make_event("verified", job, **details))

    def _plan(self, job):
        """The job's FilePlans and every name the item lists."""
        if not hasattr(self.thread_connections, "connection"):
            self.thread_connections.connection = Connection(self.client, self.pacing)
        connection = self.thread_connections.connection
        metadata = RetryPolicy(self.args.retries, self.pacing).run(
            lambda: fetch_metadata(connection, self.base_url, job["id"]), connection)
        add_version(job, metadata)
        # Unsafe names are ia-fetch's to refuse: there is nothing of them to check.
        plans, _unsafe = plan_files(self.session, metadata, job, job["destdir"], self.filters,
                                    flat=False)
        return plans, listed_names(job["id"], metadata)

    def _check_files(self, plans):
        """{"files_missing", "files_wrong_size", "files_wrong_md5"} (names), and the bytes
        checked."""
        findings = {"files_missing": [], "files_wrong_size": [], "files_wrong_md5": []}
        hashing = []
        checked = 0
        for plan in plans:
            try:
                st = os.stat(plan.path)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                findings["files_missing"].append(plan.name)
            elif plan.size is not None and not plan.is_files_xml and st.st_size != plan.size:
                findings["files_wrong_size"].append(plan.name)
            else:
                checked += st.st_size
                if plan.checksum_trusted:
                    hashing.append((plan, self.hashers.submit(self._md5, plan.path)))
        for plan, md5 in hashing:
            if md5.result() != plan.md5:
                findings["files_wrong_md5"].append(plan.name)
        return findings, checked

    def _md5(self, path):
        """The file's md5, or None when it cannot be read (reported)."""
        md5 = hashlib.md5()
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        try:
            with open(path, "rb", buffering=0) as f:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                while count := f.readinto(buffer):
                    md5.update(view[:count])
                    self.progress.read(count)
        except OSError as exc:
            errors.error(f"cannot read {path}: {exc.strerror}")
            return None
        return md5.hexdigest()

    def _extra(self, job, listed):
        item_dir = os.path.join(job["destdir"], job["id"])
        if "file" in job or not os.path.isdir(item_dir):
            return []
        return unlisted_files(item_dir, listed)

    # -- the writer thread ------------------------------------------------------
    def _events(self):
        """The events, as the item workers end their jobs, until the None
        that ends them; the progress is drawn again meanwhile."""
        while True:
            self.progress.render()  # at most four times a second
            try:
                event = self.events.get(timeout=0.25)
            except queue.Empty:
                continue
            if event is None:
                break
            yield event
        self.progress.clear()

    def _tally(self, event):
        kind = event["event"]
        self.progress.finished(kind)
        if kind == "verified":
            return
        self.not_verified += 1
        self.progress.clear()
        if self.writer.lost:
            return
        if kind == "failed":
            errors.error(f"{event['id']}: {event['error']}")
        else:
            found = ", ".join(f"{len(event[k])} {k.removeprefix('files_').replace('_', ' ')}"
                              for k in ("files_missing", "files_wrong_size", "files_wrong_md5")
                              if event[k])
            errors.warning(f"{event['id']}: damaged ({found})")


class _Progress:
    """One line on a terminal: jobs, damaged, failed, bytes read, rate."""

    def __init__(self, stderr, live):
        self.stderr = stderr
        self.live = live
        self.counts = {"verified": 0, "damaged": 0, "failed": 0}
        self.bytes = 0
        self.started = self.rendered = time.monotonic()
        self._drawn = False

    def read(self, count):
        self.bytes += count  # from several threads: a lost update only blurs the display

    def finished(self, kind):
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def render(self):
        now = time.monotonic()
        if not self.live or now - self.rendered < 0.25:
            return
        self.rendered = now
        elapsed = max(now - self.started, 1e-3)
        jobs = sum(self.counts.values())
        line = (f"ia-verify: {jobs} jobs, {self.counts['damaged']} damaged, "
                f"{self.counts['failed']} failed, {format_size(self.bytes)} read, "
                f"{format_size(self.bytes / elapsed)}/s")
        # Fitted as ia-fetch's frame: a wrapped line would not be erased by \r.
        self.stderr.write("\r\x1b[K" + fit(line, terminal_size()[0]))
        self.stderr.flush()
        self._drawn = True

    def clear(self):
        if self._drawn:
            self.stderr.write("\r\x1b[K")
            self.stderr.flush()
            self._drawn = False


if __name__ == "__main__":
    sys.exit(main())
