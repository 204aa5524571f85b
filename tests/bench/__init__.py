"""The benchmark (``make bench``, ``python -m tests.bench [W1 J1 ...] [--quick]``):
iatools against the tools it replaces, in the same run, on the emulator.

Download workloads (``downloads``), each against its own emulator process
with the workload's latency, bandwidth cap and faults:

- W1 many small items: 1000 items × 3 files × 10 KiB, 20 ms per request,
  https mode (CONNECT and TLS per host, as on the real service);
- W2 fat items under a cap: 8 × 128 MiB at 16 MiB/s per connection;
- W3 uncapped: 4 × 512 MiB, N = 4, three runs each (median);
- W4 one big item: 64 files × 8 MiB at 4 MiB/s per connection;
- W5 faults: W1 at 300 items with 5% 503 + Retry-After, 2% bodies cut, 2%
  corrupt, until the tree is correct (``ia-joblog failed | ia-fetch``), https;
- B1 bursts: W1's items while archive.org and two storage nodes each refuse
  everything for a few seconds; time, and requests sent to a paused host;
- L1 --bwlimit: 128 × 2 MiB at --bwlimit 8M, the rate over some 30 s.

V1 (``audit``): ia-verify over W2's tree against ``md5sum`` under ``xargs -P
2`` of the same files, same run: MiB/s and CPU s/GiB.

Contenders (``contenders``): iatools (``ia-resolve | ia-fetch``), ``ia
download`` sequential, ``ia download`` under GNU parallel, ``curl
--parallel``, and in https mode rclone's internetarchive backend (installed
by ``tests/bench/setup-system.sh``); all but iatools are anchors, and every row carries its rate's
ratio to each anchor of the same run.  Every file is checked against the
catalogue md5 (``verify``).  Log workloads: J1 (``joblogs``) a run of 10
million jobs recorded live into a fresh log (``ia-joblog skip`` of the jobs,
then ``ia-joblog append`` of 14.2 million events fed through a pipe), with
status/pending/failed/completed read right after skip, three times while
append runs (after bursts at full speed, and after a minute at a real
run's pace), after it from the index, and with no index; append's events/s; grep
-c and a bare Python line loop over the same log are its anchors
(the data are made in ``logs``).  P1 jobs/s through ia-joblog skip and
ia-route; S start-up times; F1 the CPU of planning one item of 20,000 and
of 100,000 files (``plan``).  Measurements (``measure``):
wall, CPU and peak RSS from ``os.wait4``.  Results: a Markdown table on
stdout, JSONL in tests/bench/results/.
"""
