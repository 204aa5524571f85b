"""Who gets the disk space when the disk is full: ia-fetch's transfers.

A write that meets a full disk is tried again if there is room by then, or
once the other transfers writing have made some: one may fail and give its
space back, and a job that fits must not fail for another that does not.
"""

import threading

from iatools.base.sizes import free_bytes
from iatools.fetching.http import Cancelled, FetchError
from iatools.fetching.transfer import NO_SPACE

#: How many times a write that met a full disk is tried again, each time
#: after the transfers then writing have ended (DiskRoom.with_room).
SPACE_RETRIES = 3


class DiskRoom:
    """The transfers writing, and those waiting for room."""

    def __init__(self, cancel):
        self.cancel = cancel
        self._condition = threading.Condition()
        self._transfers = set()
        self._waiting = set()  # transfers that met a full disk

    def started(self, transfer):
        with self._condition:
            self._transfers.add(transfer)

    def ended(self, transfer):
        with self._condition:
            self._transfers.discard(transfer)
            if self._waiting:  # for _room_again
                self._condition.notify_all()

    def abort_all(self):
        """Cut every transfer mid-read (the run is cancelled), and wake
        those waiting for room."""
        with self._condition:
            transfers = list(self._transfers)
            self._condition.notify_all()
        for transfer in transfers:
            transfer.abort()

    def with_room(self, write, directory, needed=4096, transfer=None):
        """``write()``, which writes ``needed`` bytes in ``directory``
        (``transfer``'s, if any), tried again after a full disk when there
        is room by then or once others made some (SPACE_RETRIES times at
        most)."""
        for _ in range(SPACE_RETRIES):
            try:
                return write()
            except (FetchError, OSError) as error:
                if not _no_space(error) or not self._room_again(directory, needed, transfer):
                    raise
        return write()

    def _room_again(self, directory, needed, transfer):
        """Is there ``needed`` bytes of room in ``directory`` now, or once
        the other transfers writing (not ``transfer``) have ended or met a
        full disk themselves?  False when none is left to give space back."""
        with self._condition:
            self._waiting.add(transfer)
            try:
                while free_bytes(directory) < needed:
                    writing = self._transfers - self._waiting
                    if not writing:
                        return False
                    while writing <= self._transfers - self._waiting:
                        if self.cancel.is_set():
                            raise Cancelled()
                        self._condition.wait()
                return True
            finally:
                self._waiting.discard(transfer)
                self._condition.notify_all()


def _no_space(error):
    if isinstance(error, FetchError):
        return error.no_space
    return error.errno in NO_SPACE
