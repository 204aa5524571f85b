"""What went wrong in a job: its own failure, and each file that failed.

A job's ``failed`` event names every file that failed (``failed_files``),
and its ``error`` says for people what failed: one private file, every file
of an access-restricted item, a file gone from the storage servers, or the
job itself (a dark item, the metadata, an interruption).  See iatools(7).
"""

from iatools.fetching.http import PermanentError

#: How many names of files failed alike the ``error`` message spells out;
#: ``failed_files`` lists them all.
NAMED_IN_MESSAGE = 5


def explain_refusal(error, plan):
    """``error`` reworded when it is a refusal (HTTP 401/403) of ``plan``'s
    file: a private file of a public item is not a restricted item."""
    status = error.http_status
    if status not in (401, 403):
        return error
    if plan.private:
        why = "a private file, which only its uploader and archive.org staff may fetch"
    elif plan.item_restricted:
        why = ("the item is access-restricted, and the account in the ia config "
               "has no access to it")
    else:
        why = "archive.org refuses this file"
    return PermanentError(f"access denied (HTTP {status}): {why}", status)


class Failures:
    """A job's failures: its own (at most one kept) and its files'."""

    def __init__(self):
        self.job_error = None
        self.files = []  # (name, FetchError), in the order they failed
        self.planned = None  # how many files the job set out to fetch

    def add(self, error, file_name=None):
        if file_name is not None:
            self.files.append((file_name, error))
        elif self.job_error is None or (self.job_error.retryable and not error.retryable):
            self.job_error = error

    def __bool__(self):
        return self.job_error is not None or bool(self.files)

    @property
    def retryable(self):
        """Whether the job as a whole may pass: not when any failure is
        permanent, which a later run would meet again (each file's own
        ``retryable`` says which could pass)."""
        return all(error.retryable for _, error in self._all())

    def details(self):
        """The fields of the job's ``failed`` event (none if all went well)."""
        if not self:
            return {}
        name, error = next((n, e) for n, e in self._all() if e.retryable == self.retryable)
        fields = {"error": self.message(), "retryable": self.retryable}
        if error.http_status:
            fields["http_status"] = error.http_status
        if name is not None:
            fields["failed_file"] = name
        if self.files:
            fields["failed_files"] = [_file_record(n, e) for n, e in self.files]
        return fields

    def message(self):
        parts = [str(self.job_error)] if self.job_error is not None else []
        groups = {}  # message -> names, in the order first seen
        for name, error in self.files:
            groups.setdefault(str(error), []).append(name)
        everything = len(groups) == 1 and len(self.files) == self.planned and self.planned > 1
        for message, names in groups.items():
            who = f"all {len(names)} files" if everything else _names(names)
            parts.append(f"{who}: {message}")
        return "; ".join(parts)

    def _all(self):
        if self.job_error is not None:
            yield None, self.job_error
        yield from self.files


def _names(names):
    shown = ", ".join(names[:NAMED_IN_MESSAGE])
    hidden = len(names) - NAMED_IN_MESSAGE
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def _file_record(name, error):
    record = {"name": name, "error": str(error), "retryable": error.retryable}
    if error.http_status:
        record["http_status"] = error.http_status
    return record
