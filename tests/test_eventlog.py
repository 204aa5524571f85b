"""iatools.log.eventlog.LogWriter: the fsync a writer leaves to a thread of
its own every SYNC_INTERVAL, and what it does when that fsync fails."""

import errno
import os
import time

import pytest

from iatools.log.eventlog import SYNC_INTERVAL, LogWriter

LINE = b'{"event":"queued","id":"x"}\n'


def test_an_fsync_that_fails_on_its_thread_fails_the_next_append_and_the_close(tmp_path):
    """A FIFO cannot be synced (EINVAL): the error of the fsync started in
    the background is raised by an append after it, not lost; and close,
    which syncs what is left, says so too."""
    fifo = tmp_path / "log"
    os.mkfifo(fifo)
    drain = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = LogWriter(str(fifo))
    try:
        writer.append([LINE])
        deadline = time.monotonic() + SYNC_INTERVAL + 5
        with pytest.raises(OSError) as raised:
            while time.monotonic() < deadline:
                writer.append([LINE])
                os.read(drain, 1 << 16)
                time.sleep(0.05)
        assert raised.value.errno == errno.EINVAL
    finally:
        with pytest.raises(OSError):
            writer.close()
        os.close(drain)


def test_close_waits_for_the_fsync_on_its_thread(tmp_path):
    """Appends for longer than SYNC_INTERVAL start fsyncs in the background;
    close joins the last before its own, and every line is there."""
    log = tmp_path / "log"
    writer = LogWriter(str(log))
    deadline = time.monotonic() + 2 * SYNC_INTERVAL + 0.5
    written = 0
    while time.monotonic() < deadline:
        writer.append([LINE] * 1000)
        written += 1000
        time.sleep(0.01)
    writer.close()
    assert log.read_bytes() == LINE * written
