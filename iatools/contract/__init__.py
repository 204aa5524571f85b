"""The JSONL contract every command speaks: jobs and events (``jobs``), the
line grammar the log readers match (``linegrammar``), reading and writing
JSONL streams (``jsonl``), shards, and the conventions of a command line
(``cli``).  Built on iatools.base only.
"""
