"""Where the keys of a log stand: the counts ``ia-joblog status`` prints,
and the bytes left to do, kept up to date key by key.

Counting from nothing walks every key a LogState holds: about 7 s for ten
million keys (profiled: a set per bucket to count the distinct keys, a
dict per bucket to find the latest sizes).  So the counts are saved with
the status checkpoint, and a reading from it moves only the keys that the
events after it name: each such key's standing (its state, whether its
failure is for good, the bytes it leaves to do) is taken before those
events are folded in and after, and the difference is added.  The events
folded in are those the keys were looked for in, no more: on a log that
grows meanwhile, the keys of the events past them would be folded in but
never counted.  The keys not named stand where they stood.
"""

from collections import Counter

QUEUED, STARTED, FAILED, COMPLETED, DAMAGED, CHANGED = range(6)
#: The states whose keys are still to do, and whose sizes count as left.
_TO_DO = (QUEUED, STARTED, DAMAGED, CHANGED)


class Standing:
    """How many keys are in each state; how many of the failed ones failed
    for good; the sum of the latest "size" of the keys to do."""

    def __init__(self, states=(0,) * 6, permanent=0, remaining=0):
        self.states = list(states)
        self.permanent = permanent
        self.remaining = remaining

    @classmethod
    def of_keys(cls, log_state, hashes):
        """The standing of the keys ``hashes`` (each once) in a LogState."""
        unfinished, reopened = log_state.unfinished.get, log_state.reopened.get
        kinds = [COMPLETED if done else unfinished(h) or reopened(h) or (QUEUED if seen else None)
                 for h, done, seen in zip(hashes, log_state.completed.contains_each(hashes),
                                          log_state.seen.contains_each(hashes))]
        tally = Counter(kinds)
        failed = [h for h, kind in zip(hashes, kinds) if kind == FAILED]
        to_do = [h for h, kind in zip(hashes, kinds) if kind in _TO_DO]
        return cls([tally[state] for state in range(6)],
                   sum(not log_state.failure[h].retryable for h in failed),
                   sum(size for size, in filter(None, log_state.sizes.latest(to_do))))

    def moved(self, before, after):
        """This standing, with some keys moved from ``before`` to ``after``."""
        return Standing([n - b + a for n, b, a in zip(self.states, before.states, after.states)],
                        self.permanent - before.permanent + after.permanent,
                        self.remaining - before.remaining + after.remaining)

    def counts(self):
        """The counts of ``ia-joblog status --json``."""
        states = self.states
        total = sum(states)
        return {
            "total": total,
            "completed": states[COMPLETED],
            "failed": states[FAILED],
            "failed_retryable": states[FAILED] - self.permanent,
            "failed_permanent": self.permanent,
            "in_progress": states[STARTED],
            "pending": total - states[COMPLETED] - states[FAILED] - states[STARTED],
            "changed": states[CHANGED],
            "damaged": states[DAMAGED],
        }

    def saved(self):
        """What a checkpoint keeps of it (``restored`` reads it back)."""
        return [self.states, self.permanent, self.remaining]

    @classmethod
    def restored(cls, saved):
        states, permanent, remaining = saved
        if len(states) != 6:
            raise ValueError("not a standing")
        return cls(states, permanent, remaining)
