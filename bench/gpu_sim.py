"""The discrete-event engine behind bench/gpu_trace.py: MeshFoundry's GPU workers and 3DAIGC-API's FIFO scheduler.

Both simulations share one clock and one compute model: a GPU shares its compute equally among the jobs running on
it (processor sharing), a model load takes its `load_s` without using compute, and a CPU worker runs one job at a
time. Nothing here sleeps or reads a clock: the same trace always gives the same figures.

`run_ours` drives the real scheduling code: each GPU worker is a `budget.Gpu` and picks jobs with `policy.select`,
exactly as `inference.scheduled_worker` does between arq polls. `run_fifo` follows 3DAIGC-API's scheduler as its
`core/scheduler` code describes itself: one queue in strict arrival order; one worker process per model (at most one
per model); the head job goes to its model's worker when that one is idle, else to a new worker on the GPU with the
most tracked free VRAM (declared figures against total memory minus a 300 MB buffer), after destroying workers idle
for more than 10 s if needed; while the head cannot be placed, it goes back to the front and the loop sleeps 2 s;
the loop waits for a new worker's model load before it dispatches anything else; jobs waiting over an hour fail.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from app.core.workers import WorkerState, admission
from inference.scheduling import policy
from inference.scheduling.budget import Gpu, Need

CONTEXT_GB = 0.5  # a CUDA context per process that touches the GPU (PyTorch 2.x: 0.3-0.6 GB by driver and card)
FIFO_BUFFER_GB = 0.3  # 3DAIGC-API's GPUMonitor memory_buffer (300 MB)
FIFO_RETRY_S = 2.0  # its loop's sleep when the head job cannot be placed
FIFO_IDLE_EVICT_S = 10.0  # only workers idle longer than this are destroyed to make room
FIFO_MAX_WAIT_S = 3600.0  # "Job has been waiting for more than 1 hour": failed


@dataclass(frozen=True)
class Task:
    task_id: int
    runner: str
    arrival: float
    run_s: float  # compute at full speed on one GPU (or one CPU worker)


@dataclass
class Record:
    """What happened to one task; `start` is when a worker took it (its load, if any, comes after)."""

    task: Task
    start: float | None = None
    finish: float | None = None
    gpu: int | None = None
    failed: str | None = None


@dataclass
class Result:
    records: list[Record]
    loads: int = 0
    evictions: int = 0
    oom_events: int = 0
    peak_gb: dict[int, float] = field(default_factory=dict)  # physical VRAM in use at its highest, per GPU
    violations: list[str] = field(default_factory=list)  # broken invariants (ours only): budget, aging window


class Device:
    """Processor sharing: every job running on it advances at 1/k of full speed when k jobs run."""

    def __init__(self) -> None:
        self.work: dict[int, float] = {}
        self.at = 0.0

    def advance(self, now: float) -> None:
        if self.work and now > self.at:
            step = (now - self.at) / len(self.work)
            for key in self.work:
                self.work[key] -= step
        self.at = now

    def next_finish(self) -> float | None:
        return self.at + min(self.work.values()) * len(self.work) if self.work else None

    def finished(self) -> list[int]:
        return sorted(k for k, left in self.work.items() if left <= 1e-9)


class Clock:
    """Timers plus devices; `run()` processes events in time order until nothing is left."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.devices: list[Device] = []
        self.on_finish: dict[tuple[int, int], Callable[[], None]] = {}  # (device index, job) -> completion

    def at(self, moment: float, callback: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.timers, (moment, self.seq, callback))

    def device(self) -> int:
        self.devices.append(Device())
        return len(self.devices) - 1

    def compute(self, device: int, job: int, work_s: float, done: Callable[[], None]) -> None:
        dev = self.devices[device]
        dev.advance(self.now)
        dev.work[job] = max(work_s, 1e-6)
        self.on_finish[(device, job)] = done

    def run(self, after_each: Callable[[], None]) -> None:
        while True:
            finishes = [(f, i) for i, d in enumerate(self.devices) if (f := d.next_finish()) is not None]
            next_finish = min(finishes) if finishes else None
            next_timer = self.timers[0][0] if self.timers else None
            if next_finish is None and next_timer is None:
                return
            if next_timer is not None and (next_finish is None or next_timer < next_finish[0]):
                self.now, _, callback = heapq.heappop(self.timers)
                for d in self.devices:
                    d.advance(self.now)
                callback()
            else:
                assert next_finish is not None
                self.now = next_finish[0]
                for d in self.devices:
                    d.advance(self.now)
                dev = self.devices[next_finish[1]]
                for job in dev.finished():
                    del dev.work[job]
                    self.on_finish.pop((next_finish[1], job))()
            after_each()


# --- MeshFoundry: one worker per GPU picking with the real policy --------------------------------------------------


@dataclass
class _Worker:
    index: int
    pool: str
    gpu: Gpu
    device: int
    slots: int
    running: dict[int, Task] = field(default_factory=dict)


def run_ours(tasks: list[Task], needs: Mapping[str, Need], gpus_gb: list[float], *, margin_gb: float,
             window_s: float, max_jobs: int = 1, cpu_workers: int = 2, admission_bound: int = 0) -> Result:  # fmt: skip
    """MeshFoundry: a worker per GPU (budget = memory - CUDA context - margin) and `cpu_workers` for VRAM-free jobs.

    `admission_bound` > 0: creates go through the API's admission rule first (`app.core.workers.admission`); a
    refused task is recorded as failed ("503") and never queued.
    """
    clock = Clock()
    records = {t.task_id: Record(t) for t in tasks}
    result = Result(list(records.values()))
    workers = [_Worker(i, "gpu", Gpu(total - CONTEXT_GB - margin_gb), clock.device(), max_jobs)
               for i, total in enumerate(gpus_gb)]  # fmt: skip
    workers += [_Worker(len(gpus_gb) + i, "cpu", Gpu(0.0), clock.device(), 1) for i in range(cpu_workers)]
    queues: dict[str, list[Task]] = {"gpu": [], "cpu": []}

    def pool_of(task: Task) -> str:
        return "cpu" if needs[task.runner].top_gb == 0 else "gpu"

    def finish(worker: _Worker, task: Task) -> None:
        worker.gpu = worker.gpu.finish(needs[task.runner])
        del worker.running[task.task_id]
        records[task.task_id].finish = clock.now

    def start(worker: _Worker, task: Task) -> None:
        need = needs[task.runner]
        waiting = queues[worker.pool]
        _check_window(result, worker, task, waiting, needs, window_s)
        victims = worker.gpu.victims(need)
        assert victims is not None, "the policy chose a job that does not fit"
        loaded = not worker.gpu.holds(need.runner) and worker.pool == "gpu"
        result.evictions += len(victims)
        result.loads += loaded
        worker.gpu = worker.gpu.start(need)
        if worker.pool == "gpu":
            physical = worker.gpu.used_gb + CONTEXT_GB
            result.peak_gb[worker.index] = max(result.peak_gb.get(worker.index, 0.0), physical)
            if worker.gpu.used_gb > worker.gpu.budget_gb + 1e-6:
                result.violations.append(f"t={clock.now:.1f} GPU {worker.index} over budget")
            if physical > gpus_gb[worker.index] + 1e-6:
                result.oom_events += 1
        waiting.remove(task)
        worker.running[task.task_id] = task
        records[task.task_id].start, records[task.task_id].gpu = clock.now, worker.index
        delay = need.load_s if loaded else 0.0
        clock.at(clock.now + delay, lambda: clock.compute(worker.device, task.task_id, task.run_s,
                                                           lambda: finish(worker, task)))  # fmt: skip

    def dispatch() -> None:
        for worker in workers:
            free = worker.slots - len(worker.running)
            waiting = queues[worker.pool]
            if free <= 0 or not waiting:
                continue
            by_id = {t.task_id: t for t in waiting}
            candidates = [policy.Candidate(str(t.task_id), t.runner, t.arrival) for t in waiting]
            peers = [policy.Peer(idle=not w.running, runners=frozenset(m.runner for m in w.gpu.models))
                     for w in workers if w is not worker and w.pool == worker.pool]  # fmt: skip
            for chosen in policy.select(candidates, worker.gpu, needs, window_s=window_s, slots=free, peers=peers):
                start(worker, by_id[int(chosen.job_id)])

    states = [WorkerState(str(w.index), w.pool, w.gpu.budget_gb, w.slots) for w in workers]

    def arrive(task: Task) -> None:
        pool = pool_of(task)
        need = needs[task.runner].top_gb
        queued = len(queues[pool]) + sum(len(w.running) for w in workers if w.pool == pool)  # as arq's ZCARD counts
        verdict = admission(states, pool=pool, need_gb=need, queued=queued, bound=admission_bound, label=task.runner)
        if verdict.outcome == "admit":
            queues[pool].append(task)
        else:
            records[task.task_id].failed = f"refused ({verdict.outcome})"

    for task in tasks:
        clock.at(task.arrival, lambda task=task: arrive(task))
    clock.run(dispatch)
    return result


def _check_window(result: Result, worker: _Worker, task: Task, waiting: list[Task], needs: Mapping[str, Need],
                  window_s: float) -> None:  # fmt: skip
    """The aging bound: no job this GPU could fit waits while one that arrived `window_s` or more later starts."""
    for other in waiting:
        overtaken = other.arrival < task.arrival and task.arrival - other.arrival >= window_s
        if overtaken and worker.gpu.can_ever_fit(needs[other.runner]):
            result.violations.append(f"task {task.task_id} overtook task {other.task_id} on worker {worker.index}")
            return


# --- 3DAIGC-API: one strict FIFO queue, one process per model -----------------------------------------------------


@dataclass
class _ModelWorker:
    runner: str
    gpu: int | None  # None: a VRAM-free model runs on the CPU
    busy: bool = False
    last_used: float = 0.0


def run_fifo(tasks: list[Task], needs: Mapping[str, Need], gpus_gb: list[float]) -> Result:
    """3DAIGC-API's scheduler as described in the module docstring."""
    clock = Clock()
    records = {t.task_id: Record(t) for t in tasks}
    result = Result(list(records.values()))
    gpu_devices = [clock.device() for _ in gpus_gb]
    allocated = [0.0] * len(gpus_gb)
    workers: dict[str, _ModelWorker] = {}
    cpu_devices: dict[str, int] = {}
    queue: deque[Task] = deque()
    state = {"blocked_until": 0.0}

    def available(gpu: int) -> float:
        return gpus_gb[gpu] - allocated[gpu] - FIFO_BUFFER_GB

    def processes(gpu: int) -> int:
        return sum(1 for w in workers.values() if w.gpu == gpu)

    def note_memory(gpu: int) -> None:
        physical = allocated[gpu] + CONTEXT_GB * processes(gpu)
        result.peak_gb[gpu] = max(result.peak_gb.get(gpu, 0.0), physical)
        if physical > gpus_gb[gpu] + 1e-6:
            result.oom_events += 1

    def destroy(worker: _ModelWorker) -> None:
        del workers[worker.runner]
        if worker.gpu is not None:
            allocated[worker.gpu] -= needs[worker.runner].top_gb
        result.evictions += 1

    def place(need: Need) -> int | None:
        """find_best_gpu, then _find_gpu_with_freeable_vram."""
        fits = [g for g in range(len(gpus_gb)) if available(g) >= need.top_gb]
        if fits:
            return max(fits, key=lambda g: (available(g), -g))
        for g in range(len(gpus_gb)):
            idle = sorted((w for w in workers.values() if w.gpu == g and not w.busy
                           and clock.now - w.last_used > FIFO_IDLE_EVICT_S),
                          key=lambda w: w.last_used)  # fmt: skip
            if available(g) + sum(needs[w.runner].top_gb for w in idle) >= need.top_gb:
                for w in idle:
                    if available(g) >= need.top_gb:
                        break
                    destroy(w)
                return g
        return None

    def run_job(worker: _ModelWorker, task: Task) -> None:
        worker.busy = True
        record = records[task.task_id]
        record.start, record.gpu = clock.now, worker.gpu
        if worker.gpu is None:
            device = cpu_devices.setdefault(worker.runner, clock.device())
        else:
            device = gpu_devices[worker.gpu]

        def done() -> None:
            worker.busy, worker.last_used = False, clock.now
            record.finish = clock.now

        clock.compute(device, task.task_id, task.run_s, done)

    def dispatch() -> None:
        while queue and clock.now >= state["blocked_until"]:
            task = queue[0]
            need = needs[task.runner]
            if clock.now - task.arrival > FIFO_MAX_WAIT_S:
                queue.popleft()
                records[task.task_id].failed = "waited more than 1 h"
                continue
            worker = workers.get(task.runner)
            if worker is not None:
                if worker.busy:  # WORKERS_BUSY: back to the front, sleep
                    _sleep(FIFO_RETRY_S)
                    return
                queue.popleft()
                run_job(worker, task)
                continue
            if need.top_gb == 0:
                gpu = None
            else:
                gpu = place(need)
                if gpu is None:  # NO_VRAM
                    _sleep(FIFO_RETRY_S)
                    return
                allocated[gpu] += need.top_gb
            worker = workers[task.runner] = _ModelWorker(task.runner, gpu, busy=True, last_used=clock.now)
            if gpu is not None:
                note_memory(gpu)
                result.loads += 1
            queue.popleft()
            load = need.load_s if gpu is not None else 0.0
            state["blocked_until"] = clock.now + load  # the loop awaits the new worker's model load

            def loaded(worker: _ModelWorker = worker, task: Task = task) -> None:
                run_job(worker, task)

            clock.at(clock.now + load, loaded)
            return

    def _sleep(seconds: float) -> None:
        state["blocked_until"] = clock.now + seconds
        clock.at(clock.now + seconds, lambda: None)  # wake the loop

    for task in tasks:
        clock.at(task.arrival, lambda task=task: queue.append(task))
    clock.run(dispatch)
    return result
