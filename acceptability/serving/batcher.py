"""Micro-batching: concurrent requests share one predict call, after a bounded wait, through a bounded queue.
Up to `workers` batches run at once, each in its own thread (ONNX Runtime releases the GIL while it runs)."""

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class QueueFull(Exception):
    """More sentences are waiting than the queue allows: the caller should retry later."""


class MicroBatcher:
    def __init__(self, predict: Callable[[list[str]], list], max_batch: int, max_wait_s: float, max_queue: int,
                 workers: int = 1):
        self.predict, self.max_batch, self.max_wait_s, self.max_queue = predict, max_batch, max_wait_s, max_queue
        self.queue: asyncio.Queue = asyncio.Queue()
        self.waiting = 0  # sentences queued or in a running batch
        self.workers = asyncio.Semaphore(workers)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
        self.task: asyncio.Task | None = None
        self.running: set[asyncio.Task] = set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def submit(self, sentences: list[str]) -> list:
        if self.waiting + len(sentences) > self.max_queue:
            raise QueueFull
        future = asyncio.get_running_loop().create_future()
        self.waiting += len(sentences)
        self.queue.put_nowait((sentences, future))
        return await future

    async def collect(self) -> list[tuple[list[str], asyncio.Future]]:
        batch = [await self.queue.get()]
        size, loop = len(batch[0][0]), asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            if self.queue.empty():
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), left)
                except TimeoutError:
                    break
            else:
                item = self.queue.get_nowait()
            batch.append(item)
            size += len(item[0])
        return batch

    async def run(self) -> None:
        while True:
            await self.workers.acquire()  # a free worker first: requests queue up (and batch) meanwhile
            batch = await self.collect()
            task = asyncio.get_running_loop().create_task(self.answer(batch))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def answer(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        sentences = [sentence for request, _ in batch for sentence in request]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self.predict, sentences)
        except Exception as err:  # the callers see it; the batcher keeps serving
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
        else:
            start = 0
            for request, future in batch:
                if not future.done():  # a caller that timed out has cancelled its future
                    future.set_result(results[start:start + len(request)])
                start += len(request)
        finally:
            self.waiting -= len(sentences)
            self.workers.release()

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
