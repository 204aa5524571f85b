"""``Router``: ia-route's choice of a destdir for each job, for a program
(the Python API) and for ia-route itself.

It checks the disks and notes the items they hold (iatools.routing.disks),
then places jobs with one of the routers of iatools.routing.routers:
``SpaceRouter`` by free space, or ``HashSpread`` without looking at it.
"""

from iatools.contract.jobs import job_from_record, validate_job
from iatools.contract.linegrammar import key_bytes
from iatools.routing.disks import check_distinct, list_items, open_disk
from iatools.routing.routers import HashSpread, SpaceRouter

DEFAULT_MARGIN = 1 << 30
DEFAULT_ASSUME_SIZE = 1 << 30
DEFAULT_WAIT = 30.0


class Router:
    """Give each job a ``destdir``: the disk with the most room after
    ``margin`` bytes and after what it has promised to the jobs routed
    before; every job of an item on one disk, an item already on a disk
    back to it.  By free space, a new item is claimed on its disk as it is
    routed (its directory is made there: iatools.routing.claims), so that
    another Router or ia-route on the same disks sends it there too.

    ``destdirs``: the disks, existing writable directories on distinct
    filesystems.  ``assume_size``: the room a job without ``"size"`` takes.
    When no disk has room, wait, looking again every ``wait`` seconds, or
    raise ``routers.NoSpace`` (``no_wait``).  ``disk_check=False`` looks at
    no free space and spreads items by a hash of their identifier.  A job
    that has a destdir keeps it, unless ``force``.  A disk that is wrong at
    start raises ``errors.UsageError``.
    """

    def __init__(self, destdirs, *, margin=DEFAULT_MARGIN, assume_size=DEFAULT_ASSUME_SIZE,
                 wait=DEFAULT_WAIT, no_wait=False, disk_check=True, force=False):
        if wait <= 0:
            raise ValueError("wait must be more than 0 seconds")
        disks = [open_disk(path) for path in destdirs]
        check_distinct(disks, not disk_check)
        for disk in disks:
            list_items(disk)
        #: The router that places the jobs: SpaceRouter or HashSpread.
        self.placer = (SpaceRouter(disks, margin, assume_size, wait, no_wait) if disk_check
                       else HashSpread(disks))
        self.force = force

    @property
    def disks(self):
        """The disks (``disks.Disk``): path, jobs routed there, room ..."""
        return self.placer.disks

    @property
    def skipped(self):
        """Jobs skipped so far (too large for any disk, or their item's
        disk dropped), each reported on stderr."""
        return self.placer.skipped

    def route(self, jobs):
        """Yield each of ``jobs`` (dicts) with its ``destdir``, in order,
        but the skipped ones; a dict that is no job raises ValueError
        (``jsonl.BadLine``) when its turn comes."""
        for job in jobs:
            job = validate_job(job_from_record(dict(job)))
            if self.passes_through(job):
                yield job
                continue
            disk = self.disk_for(job)
            if disk is not None:
                yield {**job, "destdir": disk.path}

    def passes_through(self, job):
        """Does ``job`` keep the destdir it has?"""
        return "destdir" in job and not self.force

    def disk_for(self, job):
        """The disk of a validated job, or None when it is skipped."""
        return self.placer.place_one(job["id"].encode(), key_bytes(job), job.get("size"))
