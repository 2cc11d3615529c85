"""Encoding images and prompts into block arrays of a cache file: batched, resumable, sharded by block.

Each DataLoader batch is one block of a cache array, so a block is written (and marked done) as soon as it
is encoded; blocks already done are never re-read. Shard ``(rank, world)`` takes the blocks ``b`` with
``b % world == rank``: one process, many GPUs and many nodes run the same map.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cache import BlockArray
from stages.extract.datasets.base import DatasetReader
from stages.extract.device_decode import as_list, decode_samples, pillow_sample, pixel_chunks, read_sample
from stages.extract.images import BadImageError
from stages.extract.views import seeded, view_seed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs."""

    device: torch.device
    precision: str  # fp32 | fp16 | bf16 | amp | amp_bf16
    workers: int
    skip_bad: bool = False
    shard: tuple[int, int] = (0, 1)
    decode: str = "pil"  # pil: Pillow + the model's transform in the workers; tensor: see device_decode.py

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision in ("amp", "amp_bf16"):
            dtype = torch.bfloat16 if self.precision == "amp_bf16" else torch.float16
            return torch.autocast(self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def owns(self, block: int) -> bool:
        rank, world = self.shard
        return block % world == rank


class ImageSet(Dataset):
    """The images of a split, by row: decoded and transformed (a bad image yields zeros and its error text),
    or with ``tensor_transform``, what ``--decode tensor`` sends from a worker (``device_pixels`` finishes it).
    """

    def __init__(self, reader: DatasetReader, relpaths: Sequence[str], positions: np.ndarray,
                 transform: Callable, image_size: int, aug_seed: int | None = None, view: int = 0,
                 draft: int | None = None, tensor_transform: Callable | None = None) -> None:
        self.reader, self.relpaths, self.positions = reader, list(relpaths), positions
        self.transform, self.image_size, self.aug_seed, self.view = transform, image_size, aug_seed, view
        self.draft = draft  # reduced-scale JPEG decoding (extract --fast-decode); None: exact
        self.tensor_transform = tensor_transform

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, row: int) -> Any:
        if self.tensor_transform is not None:
            return read_sample(self.reader.load_image, self.reader.image_file(self.relpaths[row]), self.relpaths[row])
        try:
            if self.draft:
                image = self.reader.load_image(self.relpaths[row], draft=self.draft)
            else:
                image = self.reader.load_image(self.relpaths[row])
        except BadImageError as exc:
            return torch.zeros(3, self.image_size, self.image_size), str(exc)
        transform = self.transform
        if self.aug_seed is not None:
            transform = seeded(transform, view_seed(self.aug_seed, self.view, int(self.positions[row])))
        return transform(image), ""

    def device_pixels(self, samples: Sequence, rows: Sequence[int], device: torch.device) -> tuple[torch.Tensor, list[str]]:
        """The model's input for the worker ``samples`` of ``rows``, decoded and transformed on ``device``
        (in parts of at most ``MAX_DECODE_PIXELS`` decoded pixels; a bad image's row is zeros)."""
        pixels = torch.zeros(len(samples), 3, self.image_size, self.image_size, device=device)
        errors = [""] * len(samples)
        for chunk in pixel_chunks(samples):
            images, chunk_errors = decode_samples([samples[i] for i in chunk], device, lambda j: pillow_sample(
                self.reader.load_image, self.relpaths[rows[chunk[j]]]))
            good = [j for j, image in enumerate(images) if image is not None]
            for j, error in zip(chunk, chunk_errors):
                errors[j] = error
            if not good:
                continue
            kept = [images[j] for j in good]
            if self.aug_seed is None:
                done = self.tensor_transform(kept)
            else:
                seeds = [view_seed(self.aug_seed, self.view, int(self.positions[rows[chunk[j]]])) for j in good]
                done = self.tensor_transform(kept, seeds)
            if len(good) == len(samples):  # the whole batch in one part, every image decoded
                return done, errors
            pixels[torch.as_tensor([chunk[j] for j in good], device=device)] = done
        return pixels, errors


@dataclass
class ImageJob:
    """One block array to fill with the encoded images of one split (or one augmented view of it)."""

    images: ImageSet
    array: BlockArray
    lead_index: tuple[int, ...] = ()
    bad: BlockArray | None = None


class _Chain(Dataset):
    """The images of several jobs as one dataset, so one DataLoader and its workers serve them all.

    One loader per split or view would restart the workers at each, leaving the model idle while the
    first batch of the next one is decoded; chained, the prefetch runs across the boundaries.
    """

    def __init__(self, jobs: Sequence[ImageJob]) -> None:
        self.jobs = list(jobs)
        self.offsets = np.cumsum([0] + [len(job.images) for job in self.jobs]).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        job = bisect.bisect_right(self.offsets, index) - 1
        return self.jobs[job].images[index - self.offsets[job]]


def encode_jobs(model: torch.nn.Module, jobs: Sequence[ImageJob], runtime: Runtime,
                progress: Callable[[int], None] = lambda n: None) -> list[str]:
    """Encode every missing block this shard owns, over all ``jobs``; return the errors of skipped images."""
    chain = _Chain(jobs)
    plan = [(job, block, offset) for job, offset in zip(chain.jobs, chain.offsets)
            for block in todo_blocks(job.array, job.bad, job.lead_index, runtime)]
    if not plan:
        return []
    batches = [list(range(offset + job.array.rows(block).start, offset + job.array.rows(block).stop))
               for job, block, offset in plan]
    loader = DataLoader(
        chain,
        batch_sampler=batches,
        num_workers=runtime.workers,
        pin_memory=runtime.device.type == "cuda",
        prefetch_factor=4 if runtime.workers > 0 else None,
        collate_fn=as_list if runtime.decode == "tensor" else None,
    )
    inputs = _model_inputs(plan, loader, runtime)
    if runtime.decode == "tensor":
        inputs = _one_batch_ahead(inputs, runtime.device)
    skipped: list[str] = []
    pending: _Pending | None = None
    try:
        for job, block, pixels, errors in inputs:
            failed = [i for i, e in enumerate(errors) if e]
            if failed and not runtime.skip_bad:
                if pending is not None:
                    pending.finish(progress)
                raise BadImageError(f"{errors[failed[0]]} (pass --skip-bad to skip unreadable images, "
                                    "or remove it from the split)")
            launched = _Pending(job, block, *_launch(model.encode_image, pixels, runtime), failed)
            if pending is not None:  # the GPU runs this batch while the host stores the previous one
                pending.finish(progress)
            pending = launched
            skipped += [errors[i] for i in failed]
    finally:
        close = getattr(inputs, "close", None)
        if close is not None:
            close()
    if pending is not None:
        pending.finish(progress)
    return skipped


def _model_inputs(plan: list, loader: DataLoader, runtime: Runtime) -> Iterator[tuple]:
    """(job, block, pixels, errors) per planned block: the loader's batch, finished on the device for tensor."""
    for (job, block, _), batch in zip(plan, loader):
        if runtime.decode == "tensor":
            rows = job.array.rows(block)
            pixels, errors = job.images.device_pixels(batch, range(rows.start, rows.stop), runtime.device)
            yield job, block, pixels, errors
        else:
            pixels, errors = batch
            yield job, block, pixels, list(errors)


def _one_batch_ahead(inputs: Iterator[tuple], device: torch.device, depth: int = 2) -> Iterator[tuple]:
    """Prepare the next batches (decode, resize) in a thread while the model runs on this one.

    Decoding and resizing a batch on the device is hundreds of small launches; in the model's thread they would
    add their host time to it. On CUDA the thread works on a side stream and each batch carries an event that
    the model's stream waits for, never the host. The order of ``inputs`` is kept, an exception in the thread
    is raised here, and closing this generator early stops the thread.
    """
    cuda = device.type == "cuda"
    side = torch.cuda.Stream(device) if cuda else None
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with torch.cuda.stream(side) if cuda else contextlib.nullcontext():
                for item in inputs:
                    event = None
                    if cuda:
                        event = torch.cuda.Event()
                        event.record(side)
                    if not hand_over((item, event)):
                        return
        except BaseException as exc:  # raised in the consumer
            hand_over((exc, None))
            return
        hand_over((None, None))

    worker = threading.Thread(target=produce, name="decode-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, event = ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            if event is not None:
                stream = torch.cuda.current_stream(device)
                stream.wait_event(event)
                item[2].record_stream(stream)  # the pixels, made on the side stream, are used on this one
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()


@dataclass
class _Pending:
    """A block whose features are on their way to host memory (``ready`` is None on CPU)."""

    job: ImageJob
    block: int
    features: torch.Tensor
    ready: "torch.cuda.Event | None"
    failed: list[int]

    def finish(self, progress: Callable[[int], None]) -> None:
        """Wait for the copy, then write the block (bad rows zeroed) and its bad-image flags."""
        if self.ready is not None:
            self.ready.synchronize()
        features = self.features.numpy()
        features[self.failed] = 0.0
        self.job.array.write(self.job.lead_index + (self.block,), features)
        if self.job.bad is not None and not self.job.lead_index:
            flags = np.zeros(len(features), np.uint8)
            flags[self.failed] = 1
            self.job.bad.write((self.block,), flags)
        progress(len(features))


def encode_texts(
    model: torch.nn.Module,
    tokenizer: Callable,
    prompts: list[list[str]],
    array: BlockArray,
    runtime: Runtime,
) -> None:
    """Encode the (C x L) prompts into ``array`` (C, L, D), one block of classes at a time.

    On CPU the text pass runs on ``TEXT_THREADS`` torch threads whatever the process is set to, so that one
    process and every ``torchrun`` layout (whose ranks run with ``OMP_NUM_THREADS=1``) write the same bits:
    the text encoder's products are summed in a thread-dependent order (up to 5e-7 apart otherwise).
    """
    with fixed_threads(TEXT_THREADS if runtime.device.type == "cpu" else None):
        for (block,) in array.missing():
            rows = array.rows(block)
            flat = [p for per_class in prompts[rows] for p in per_class]
            tokens = tokenizer(flat)
            features = _forward(model.encode_text, tokens, runtime)
            array.write((block,), features.reshape(rows.stop - rows.start, len(prompts[0]), -1))


#: torch threads of the CPU text pass (see ``encode_texts``); prompts are few next to images, so one is enough.
TEXT_THREADS = 1


@contextlib.contextmanager
def fixed_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch intra-op threads (None: unchanged), restoring the setting after."""
    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _forward(encode: Callable, batch: torch.Tensor, runtime: Runtime) -> np.ndarray:
    """Encode one batch and wait for its float32 features on the host."""
    features, ready = _launch(encode, batch, runtime)
    if ready is not None:
        ready.synchronize()
    return features.numpy()


def _launch(encode: Callable, batch: torch.Tensor, runtime: Runtime) -> tuple[torch.Tensor, "torch.cuda.Event | None"]:
    """Start encoding one batch; on a GPU return at once with a pinned host buffer and the event that fills it.

    Not waiting here (no ``.cpu()``, no ``.item()``) keeps the GPU queue full while the host writes the
    previous block; on CPU the features are simply computed.
    """
    batch = batch.to(runtime.device, non_blocking=True)
    if runtime.precision == "fp16":
        batch = batch.half() if batch.is_floating_point() else batch
    elif runtime.precision == "bf16":
        batch = batch.bfloat16() if batch.is_floating_point() else batch
    with torch.inference_mode():
        with runtime.autocast():
            out = encode(batch)
        if runtime.device.type != "cuda":
            return out.float().cpu(), None  # a no-op on CPU; other devices (mps) copy here
        host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(out.float(), non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        return host, ready


def todo_blocks(array: BlockArray, bad: BlockArray | None, lead_index: tuple[int, ...],
                runtime: Runtime) -> list[int]:
    """Blocks of ``array`` (at ``lead_index``) still to encode by this shard; a missing bad-mask block counts."""
    missing = {idx[-1] for idx in array.missing() if tuple(idx[:-1]) == lead_index}
    if bad is not None and not lead_index:
        missing |= {idx[-1] for idx in bad.missing()}
    return sorted(b for b in missing if runtime.owns(b))


class Throughput:
    """Progress over images with images/s and ETA: a tqdm bar on a terminal, a log line every
    ``every`` seconds otherwise (batch jobs and CI logs still show that the run is alive)."""

    def __init__(self, total: int, desc: str, every: float = 30.0) -> None:
        from tqdm import tqdm

        self.start = self.last = time.perf_counter()
        self.first: tuple[float, int] | None = None  # (time, count) when the first block was stored
        self.end: float | None = None
        self.count, self.total, self.desc, self.every = 0, total, desc, every
        self.bar = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0,
                        disable=None)

    def __call__(self, n: int) -> None:
        self.count += n
        self.bar.update(n)
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, self.count)
        if self.bar.disable and now - self.last >= self.every:
            self.last = now
            rate = self.count / (now - self.start)
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d images, %.1f img/s, ETA %s", self.desc, self.count, self.total, rate,
                     time.strftime("%H:%M:%S", time.gmtime(eta)) if eta != float("inf") else "?")

    def close(self) -> float:
        """Images/s from the start (workers' start-up and the first batch included)."""
        self.bar.close()
        self.end = time.perf_counter()
        elapsed = self.end - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def steady(self) -> float:
        """Images/s after the first stored block: the rate a long run settles to (0.0 with one block)."""
        if self.first is None or self.count == self.first[1]:
            return 0.0
        return (self.count - self.first[1]) / max((self.end or time.perf_counter()) - self.first[0], 1e-9)
