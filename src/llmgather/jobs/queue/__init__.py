"""A Redis work queue: `run --queue URL` spreads a job's items over `llmgather worker`s on any
number of machines and collects their results into the same job store and output as a local run.

    coordinator (run --queue)                   workers (llmgather worker --queue)
    pending items ─▶ XADD tasks ───────────────▶ XREADGROUP (group "workers") ─▶ Client.map
    job store + output ◀── XREAD results:JOB ◀── XADD results:JOB, then XACK + XDEL the task
                                                XAUTOCLAIM: a dead worker's tasks, once idle

- **At least once, recorded once.** A task is acknowledged only after its result is in the
  results stream; a worker that dies leaves its tasks pending, and another claims them once
  they have been idle for `reclaim_after` (a live worker keeps its own fresh). The coordinator
  keeps the first result per id: the output has exactly one line per input.
- **Bounded.** The coordinator keeps at most `window` items outstanding; a worker reads no more
  than it can send.
- **Resumable.** The coordinator's job store is the truth, as in a local run. A rerun reads the
  results that arrived while it was away and enqueues only what was never enqueued. If Redis
  loses its data (a restart without persistence), the coordinator notices its job's marker is
  gone and enqueues again what was outstanding: only the items in flight are sent twice. A
  partial loss keeps the marker (a restart from an older snapshot, an evicted key): every
  `reconcile_every` seconds the coordinator looks for its outstanding items among the tasks
  (queued or taken: a task leaves the stream only with its result written) and the results
  not read yet, and enqueues again those missing twice in a row.
- **Stopped**, the coordinator takes back the job's tasks no worker has read (they stay
  pending in the job store, and a rerun enqueues them again) and collects the rest.
- **Counted.** Each result carries the 429s its worker met since its previous one, so the
  coordinator's summary counts them.

    wire.py         keys, the task and result codecs, the consumer group
    scripts.py      the coordinator's Lua: withdraw untaken tasks, find what Redis holds
    coordinator.py  QueueCoordinator: `run --queue`'s side
    worker.py       QueueWorker: `llmgather worker`'s side

Keys (the queue's name in braces: a Redis cluster keeps them in one slot):
`llmgather:q:{NAME}:tasks` (stream, group "workers"), `…:results:JOB` (stream),
`…:job:JOB` (the marker) and `…:enqueued:JOB` (set of ids).
"""

from llmgather.jobs.queue.coordinator import QueueCoordinator, QueueCounts, job_key_for
from llmgather.jobs.queue.worker import DEFAULT_RECLAIM_AFTER_S, QueueWorker, WorkerCounts

__all__ = [
    "DEFAULT_RECLAIM_AFTER_S",
    "QueueCoordinator",
    "QueueCounts",
    "QueueWorker",
    "WorkerCounts",
    "job_key_for",
]
