"""The event log behind ``ia-joblog``: appending (``eventlog``), reading it
in chunks by the line grammar (``completions``, ``openjobs``, ``logstate``),
checkpoints beside it (``checkpoint``, ``logindex``), and the reports
(``logreport``, ``skipjudge``).  Built on iatools.contract and iatools.base.
"""
