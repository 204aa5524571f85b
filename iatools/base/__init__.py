"""The shared base: errors and exit statuses, signals, sizes and durations,
back-off, compact key sets.  Imports nothing else of iatools.
"""
