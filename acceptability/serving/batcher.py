"""Micro-batching: concurrent requests share one predict call, after a bounded wait, through a queue bounded by the
work it holds (tokens), not by its length. Up to `workers` batches run at once, each in its own thread (ONNX Runtime
releases the GIL while it runs).

The cheapest request waiting goes first (then the oldest of equal cost), so one client's queue of large requests cannot
hold up a small one; a large request still runs as soon as nothing smaller waits, or times out with 504.

A batch that fails is answered request by request, so one bad request fails alone. A request whose caller gave up
(its deadline passed, or the client left) is dropped before any compute."""

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class QueueFull(Exception):
    """More work is waiting than can be answered within the timeout: the caller should retry later."""


@dataclass(order=True)
class Job:
    cost: int  # tokens: the queue's order
    seq: int  # arrival, among equal costs
    sentences: list[str] = field(compare=False)
    future: asyncio.Future = field(repr=False, compare=False)


class MicroBatcher:
    def __init__(
        self, predict: Callable[[list[str]], list], max_batch: int, max_wait_s: float, max_cost: int, workers: int = 1
    ):
        self.predict, self.max_batch, self.max_wait_s, self.max_cost = predict, max_batch, max_wait_s, max_cost
        self.queue: asyncio.PriorityQueue[Job] = asyncio.PriorityQueue()
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
        if len(sentences) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} sentences a request; found {len(sentences)}")
        if self.waiting_cost + cost > self.max_cost:
            raise QueueFull
        job = Job(cost, next(self.arrivals), sentences, asyncio.get_running_loop().create_future())
        self.waiting += len(sentences)
        self.waiting_cost += cost
        self.queue.put_nowait(job)
        return await job.future

    async def next_job(self, timeout: float | None) -> Job | None:
        if timeout is None:
            return await self.queue.get()
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def collect(self) -> list[Job]:
        """Jobs for one call: at most max_batch sentences, waiting up to max_wait_s for the batch to fill."""
        batch = [await self.next_job(None)]
        size, loop = len(batch[0].sentences), asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            job = await self.next_job(deadline - loop.time())
            if job is None:
                break
            if size + len(job.sentences) > self.max_batch:
                self.queue.put_nowait(job)  # back in its place: the next batch takes whatever is cheapest then
                break
            batch.append(job)
            size += len(job.sentences)
        return batch

    async def run(self) -> None:
        while True:
            await self.workers.acquire()  # a free worker first: requests queue up (and batch) meanwhile
            batch = await self.collect()
            task = asyncio.get_running_loop().create_task(self.answer(batch))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def call(self, sentences: list[str]) -> list:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.predict, sentences)

    async def answer(self, batch: list[Job]) -> None:
        live = [job for job in batch if not job.future.done()]  # a caller that gave up has cancelled its future
        try:
            if live:
                await self.answer_live(live)
        finally:
            for job in batch:
                self.waiting -= len(job.sentences)
                self.waiting_cost -= job.cost
            self.workers.release()

    async def answer_live(self, jobs: list[Job]) -> None:
        try:
            results = await self.call([sentence for job in jobs for sentence in job.sentences])
        except Exception as err:
            if len(jobs) == 1:
                settle(jobs[0], error=err)
                return
            for job in jobs:  # find the culprit: each request alone, so only it fails
                if not job.future.done():
                    try:
                        settle(job, await self.call(job.sentences))
                    except Exception as alone:
                        settle(job, error=alone)
            return
        start = 0
        for job in jobs:
            settle(job, results[start : start + len(job.sentences)])
            start += len(job.sentences)

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
