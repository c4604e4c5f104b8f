"""Micro-batching: concurrent requests share predict calls, after a bounded wait, through a queue bounded by the
work it holds (tokens), not by its length. Up to `workers` calls run at once, each in its own thread (ONNX Runtime
releases the GIL while it runs).

A call takes at most `max_batch` sentences and `max_call_tokens` tokens, so how long a call runs is bounded by its
work, however long the sentences. A larger request is answered over several calls. Between calls, the
queue gives the next place to the request with the least work left and the oldest request in turn: a small request
waits for a call or two, never for the rest of one client's queue of large requests, and a stream of small requests
cannot starve a large one.

A call that fails is repeated request by request, so one bad request fails alone. A request whose caller gave up
(its deadline passed, or the client left) is dropped before any more compute."""

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class QueueFull(Exception):
    """More work is waiting than can be answered within the timeout: the caller should retry later."""


@dataclass(eq=False)
class Job:
    left_cost: int  # tokens not computed yet
    seq: int  # arrival order
    cost: int
    sentences: list[str]
    future: asyncio.Future = field(repr=False)
    results: list = field(default_factory=list)  # of the sentences answered so far, in order

    def next_sentences(self, count: int) -> list[str]:
        return self.sentences[len(self.results) : len(self.results) + count]

    def answered(self, results: list) -> None:
        self.results += results
        left = len(self.sentences) - len(self.results)
        self.left_cost = self.cost * left // len(self.sentences)
        if not left:
            settle(self, self.results)


class JobQueue:
    """Waiting jobs. take() alternates between the job with the least work left and the oldest one."""

    def __init__(self) -> None:
        self.by_cost: list = []  # heaps of (key, push, job); an entry whose job is no longer queued is skipped
        self.by_age: list = []
        self.queued: set[int] = set()  # seq of the jobs waiting
        self.pushes = itertools.count()
        self.oldest_next = False
        self.nonempty = asyncio.Event()

    def put(self, job: Job) -> None:
        push = next(self.pushes)
        heapq.heappush(self.by_cost, (job.left_cost, job.seq, push, job))
        heapq.heappush(self.by_age, (job.seq, push, job))
        self.queued.add(job.seq)
        self.nonempty.set()

    def take_nowait(self) -> Job | None:
        if not self.queued:
            return None
        heap = self.by_age if self.oldest_next else self.by_cost
        self.oldest_next = not self.oldest_next
        while True:
            job = heapq.heappop(heap)[-1]
            if job.seq in self.queued:
                self.queued.discard(job.seq)
                if not self.queued:
                    self.nonempty.clear()
                    self.by_cost.clear()  # only stale entries are left
                    self.by_age.clear()
                return job

    async def take(self, timeout: float | None) -> Job | None:
        """The next job, waiting up to `timeout` seconds (None: as long as it takes) for one to arrive."""
        if self.queued:
            return self.take_nowait()
        if timeout is not None and timeout <= 0:
            return None
        try:
            await asyncio.wait_for(self.nonempty.wait(), timeout)
        except TimeoutError:
            return None
        return self.take_nowait()


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[list[str]], list],
        max_batch: int,
        max_wait_s: float,
        max_cost: int,
        workers: int = 1,
        max_call_tokens: int | None = None,
    ):
        self.predict, self.max_batch, self.max_wait_s, self.max_cost = predict, max_batch, max_wait_s, max_cost
        self.max_call_tokens = max_call_tokens or max_cost
        self.queue = JobQueue()
        self.arrivals = itertools.count()
        self.waiting = 0  # sentences queued or in a running batch
        self.waiting_cost = 0  # their tokens
        self.workers = asyncio.Semaphore(workers)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
        self.task: asyncio.Task | None = None
        self.running: set[asyncio.Task] = set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def submit(self, sentences: list[str], cost: int) -> list:
        """Queue one request; its results in order. QueueFull when its cost would overfill the queue."""
        if not sentences:
            raise ValueError("a request needs at least one sentence")
        if self.waiting_cost + cost > self.max_cost:
            raise QueueFull
        job = Job(cost, next(self.arrivals), cost, sentences, asyncio.get_running_loop().create_future())
        self.waiting += len(sentences)
        self.waiting_cost += cost
        self.queue.put(job)
        return await job.future

    async def collect(self) -> list[tuple[Job, int]]:
        """(job, sentences of it) for one call: at most max_batch sentences and max_call_tokens tokens (a job's
        sentences counted at its mean length; at least one sentence), waiting up to max_wait_s to fill it."""
        pieces, size, tokens, loop = [], 0, 0.0, asyncio.get_running_loop()
        job = await self.queue.take(None)
        deadline = loop.time() + self.max_wait_s
        while job is not None:
            per_sentence = job.cost / len(job.sentences)
            fits = int((self.max_call_tokens - tokens) // per_sentence) if per_sentence else self.max_batch
            count = min(len(job.sentences) - len(job.results), self.max_batch - size, max(fits, 0 if pieces else 1))
            if job.future.done():  # its caller gave up: dropped before any more compute
                self.finish(job)
            elif count == 0:  # the call is full: back in the queue, in its place
                self.queue.put(job)
                break
            else:
                pieces.append((job, count))
                size, tokens = size + count, tokens + count * per_sentence
            if size >= self.max_batch or tokens >= self.max_call_tokens:
                break
            job = await self.queue.take(deadline - loop.time())
        return pieces

    async def run(self) -> None:
        while True:
            await self.workers.acquire()  # a free worker first: requests queue up (and batch) meanwhile
            pieces = await self.collect()
            task = asyncio.get_running_loop().create_task(self.answer(pieces))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def call(self, sentences: list[str]) -> list:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.predict, sentences)

    async def answer(self, pieces: list[tuple[Job, int]]) -> None:
        try:
            if pieces:
                await self.answer_pieces(pieces)
        finally:
            for job, _ in pieces:
                if job.future.done():  # answered, failed, or given up
                    self.finish(job)
                else:  # the rest of it, placed by the work it has left
                    self.queue.put(job)
            self.workers.release()

    async def answer_pieces(self, pieces: list[tuple[Job, int]]) -> None:
        try:
            results = await self.call([sentence for job, count in pieces for sentence in job.next_sentences(count)])
        except Exception as err:
            if len(pieces) == 1:
                settle(pieces[0][0], error=err)
                return
            for job, count in pieces:  # find the culprit: each request alone, so only it fails
                if not job.future.done():
                    try:
                        job.answered(await self.call(job.next_sentences(count)))
                    except Exception as alone:
                        settle(job, error=alone)
            return
        start = 0
        for job, count in pieces:
            job.answered(results[start : start + count])
            start += count

    def finish(self, job: Job) -> None:
        self.waiting -= len(job.sentences)
        self.waiting_cost -= job.cost

    async def stop(self, timeout_s: float) -> None:
        """Let queued requests finish (up to timeout_s), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.waiting and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for task in (self.task, *self.running):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.executor.shutdown(wait=True)


def settle(job: Job, results: list | None = None, error: Exception | None = None) -> None:
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(results)
