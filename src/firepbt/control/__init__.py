"""The controller side of the engine: the loop and what it keeps.

- ``loop``: the ``Runner``: decisions into segments, results into reports to the strategy,
  every event recorded in the store before it is acted on;
- ``ledger``: the checkpoint ledger (references, current checkpoints, origins, repairs);
- ``queue``: the segment queue (what goes next, defer counts, whether a source must be written
  out first);
- ``recorded``: the recorded run a resume replays, and the check that the replay matches it;
- ``progress``: progress snapshots for displays.

It drives an executor of the worker side (``firepbt.execution``) through the ``Executor``
contract; the worker side imports nothing from here.
"""
