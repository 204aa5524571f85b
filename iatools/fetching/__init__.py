"""Talking to archive.org and the fetch engine: the HTTP layer and its
pacing (``http``, ``hostpacing``, ``session``, ``bwlimit``, ``storagenodes``),
which files of an item to fetch (``selection``, ``transfer``, ``localtree``),
and ia-fetch's worker pool (``pool``, ``taskqueue``, ``workers``, ``jobrun``,
``failures``, ``diskroom``, ``locks``, ``progress``).  Built on
iatools.contract and iatools.base.
"""
