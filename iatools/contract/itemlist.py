"""Jobs of item identifiers: ``item_jobs`` (the Python API), and the lines
of an item list (``ia-resolve --itemlist``): identifiers or JSONL jobs."""

from iatools.contract import jsonl
from iatools.contract.jobs import identifier_problem, job_from_record, validate_job
from iatools.contract.jsonl import BadLine


def item_jobs(identifiers):
    """Yield the job ``{"id": IDENTIFIER}`` of each identifier, in order;
    ValueError (``jsonl.BadLine``) names what is wrong with one that
    archive.org could not hold, when its turn comes."""
    for identifier in identifiers:
        yield item_job(identifier)


def item_job(identifier):
    """The job of one identifier, or BadLine saying what is wrong with it."""
    problem = identifier_problem(identifier)
    if problem:
        raise BadLine(problem)
    return {"id": identifier}


def itemlist_job(line_number, line):
    """The job of a line of an item list: a JSONL job (a line starting with
    ``{``) or an identifier; BadLine for anything else.  (A ``parse`` for
    ``jsonl.RecordReader``.)"""
    if line.lstrip()[:1] == b"{":
        return validate_job(job_from_record(jsonl.parse_object(line)))
    try:
        identifier = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadLine("invalid UTF-8") from None
    problem = identifier_problem(identifier)
    if problem:  # a line of pretty-printed jobs, perhaps: say so
        raise BadLine(problem, jsonl.hint_for(line))
    return {"id": identifier}
