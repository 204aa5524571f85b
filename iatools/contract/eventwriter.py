"""The one thread that writes a command's events to stdout (ia-fetch,
ia-verify): workers never write there themselves, so lines never
interleave.

Each event is tallied (counted, and said on stderr when it went wrong) and
written, flushed at once so that a recorder downstream has it.  Once the
output fails, because its reader closed the pipe or a write failed (a full
disk), nothing more is written or said: ``on_lost`` is called once, to
stop the run as Ctrl-C does, and the events left are still tallied, so
that the run ends cleanly (its jobs in flight ended, its locks released).
"""

import threading

from iatools.base.status import ExitStatus
from iatools.contract import jsonl


class EventWriter:
    """Writes ``events`` from a thread of its own (``start``) to ``stdout``.

    ``tally(event)`` is called for each event before it is written; it
    leaves its messages out while ``lost``.  ``write_around(write)``, if
    given, runs each ``write()`` (ia-fetch: above its progress frame).
    """

    def __init__(self, stdout, tally, on_lost=None, write_around=None):
        self.output = jsonl.Output(stdout, what="events")
        self.tally = tally
        self.on_lost = on_lost
        self.write_around = write_around
        self.broken_pipe = False
        self.write_error = None  # a StreamError: the output failed
        self.events_error = None  # what the events' iterable raised (stdin unreadable)
        self._thread = None

    @property
    def lost(self):
        """Whether the output failed: events are neither written nor said."""
        return self.broken_pipe or self.write_error is not None

    def start(self, events, on_end=None):
        """Write ``events`` (an iterable, ended by its producer) in a new
        thread; ``on_end()`` once they have ended."""
        self._thread = threading.Thread(target=self._write_all, args=(events, on_end),
                                        name="writer", daemon=True)
        self._thread.start()

    def is_alive(self):
        return self._thread.is_alive()

    def join(self):
        self._thread.join()

    def output_status(self):
        """Once the thread has ended: raise what ended it early, if
        anything (a StreamError: exit status 1); BROKEN_PIPE if the reader
        closed the pipe; else None."""
        for error in (self.write_error, self.events_error):
            if error is not None:
                raise error
        return ExitStatus.BROKEN_PIPE if self.broken_pipe else None

    def _write_all(self, events, on_end):
        try:
            for event in events:
                self.tally(event)
                if not self.lost:
                    self._write(event)
        except Exception as exc:  # raised in the command's thread by output_status
            self.events_error = exc
        finally:
            if on_end is not None:
                on_end()

    def _write(self, event):
        try:
            if self.write_around is None:
                self._write_flushed(event)
            else:
                self.write_around(lambda: self._write_flushed(event))
        except BrokenPipeError:
            self.broken_pipe = True
        except jsonl.StreamError as exc:
            self.write_error = exc
        else:
            return
        if self.on_lost is not None:
            self.on_lost()

    def _write_flushed(self, event):
        self.output.record(event)
        self.output.flush()
