"""A training loader whose batches are a function of (seed, position) alone, so that `--resume` continues bit-exactly.

Detectron2's `build_detection_train_loader` restores neither its position nor its random augmentation after a
restart: its sampler starts over, and each worker's augmentation draws from a random stream seeded per process, so
which worker happened to load a sample decides its flip. `build_train_loader` takes the same arguments and gives the
same kind of batches (lists of mapped dataset dicts, grouped by aspect ratio as Detectron2 groups them), built so
that batch k is the same whatever happened before:
  * the sampler's index stream is regenerated from its seed; each rank takes its share as Detectron2's samplers do;
  * aspect-ratio grouping is decided from the dataset dicts' width / height (what Detectron2's grouping reads), so
    batch k's indices follow from the stream alone, before any image is loaded;
  * each sample is mapped under random generators (Python, numpy, torch) seeded from (seed, rank, position), so its
    augmentation does not depend on the worker that loads it, and the caller's generators are left as they were;
  * `state_dict()` / `load_state_dict()` carry the number of batches handed out and the seed: a resumed loader skips
    that many batches (index arithmetic only, no image is read) and goes on.
A sample the mapper cannot read is an error naming its file; with `skip_unreadable_images=True` it is replaced by
another sample (chosen from the same seed) and logged with a running count.
"""

import contextlib
import logging
import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.utils.data as torchdata

from detectron2.config import configurable
from detectron2.data.build import _train_loader_from_config, trivial_batch_collator
from detectron2.data.common import DatasetFromList
from detectron2.data.samplers import TrainingSampler
from detectron2.utils import comm

from ..config import option, yacs_option
from ..errors import Error

__all__ = ["ResumableTrainLoader", "SampleReadError", "build_train_loader", "mapped_with_file_errors", "sample_seed"]

logger = logging.getLogger(__name__)

_SKIP = option("DATALOADER.SKIP_UNREADABLE_IMAGES")
_SKIP_HINT = f"{_SKIP.lazy}=True (LazyConfig) or {_SKIP.yacs} True (yacs)"
_MAX_REPLACEMENTS = 20


class SampleReadError(Error, RuntimeError):
    """A dataset sample (image) the mapper could not read; the message names its file."""


def sample_seed(seed: int, rank: int, position: int, attempt: int = 0) -> int:
    """The seed of one sample's augmentation: a 32-bit mix of the run's seed, the rank and the sample's position in
    that rank's stream (and the replacement attempt), independent of workers and of what came before."""
    return int(np.random.SeedSequence([seed % 2**63, rank, position, attempt]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded_generators(seed: int):
    """Python's, numpy's and torch's global generators seeded with `seed` inside the block, restored after it."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _image_fault(error: BaseException) -> bool:
    """Whether `error` (raised by a dataset mapper) is the image file's fault: it cannot be opened or decoded, or its
    size disagrees with its annotation. Anything else (a mapper bug, a bad annotation) is not."""
    from PIL import Image

    from detectron2.data.detection_utils import SizeMismatchError

    return isinstance(error, (OSError, SizeMismatchError, Image.DecompressionBombError))


def mapped_with_file_errors(mapper: Callable, dataset_dict: Dict, what: str):
    """`mapper(dataset_dict)`. An image that cannot be read (`_image_fault`) is a SampleReadError naming the file and
    `what` (e.g. "the training set"); any other error is raised as it is, with a note naming the sample."""
    try:
        return mapper(dataset_dict)
    except Exception as e:
        where = f"{dataset_dict.get('file_name', '?')} (image_id {dataset_dict.get('image_id', '?')}) of {what}"
        if not _image_fault(e):
            e.add_note(f"(while mapping the sample {where})")
            raise
        raise SampleReadError(f"Cannot read image {where}: {type(e).__name__}: {e}") from e


class _BatchStream:
    """This rank's batches as lists of (position, dataset index), from the sampler's stream and the dicts' aspect
    buckets; a pure function of the sampler's seed."""

    def __init__(self, sampler, buckets: Optional[Sequence[int]], batch_size: int):
        self.sampler, self.buckets, self.batch_size = sampler, buckets, batch_size

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        pending: Dict[int, List[Tuple[int, int]]] = {0: [], 1: []}
        for position, index in enumerate(self.sampler):
            bucket = pending[self.buckets[index] if self.buckets is not None else 0]
            bucket.append((position, int(index)))
            if len(bucket) == self.batch_size:
                yield bucket[:]
                del bucket[:]


class _MappedBatches(torchdata.IterableDataset):
    """Batches `start`, `start + 1`, ... of the stream, mapped; worker w of W maps batches w, w+W, ... (the
    DataLoader hands them out in order)."""

    def __init__(self, loader: "ResumableTrainLoader", start: int):
        self.loader, self.start = loader, start

    def __iter__(self):
        info = torchdata.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for k, batch in enumerate(self.loader.batch_stream(self.start)):
            if k % workers == worker:
                yield [self.loader.map_sample(position, index) for position, index in batch]


def _identity(batch):
    return batch


class ResumableTrainLoader:
    """An endless iterable of training batches (lists of mapped dataset dicts) that can be resumed exactly; see the
    module docstring. Iteration starts (and its workers are spawned) at the first `next()`, so a checkpoint loaded
    after the trainer is built still sets where it begins."""

    def __init__(
        self,
        dataset,
        *,
        mapper,
        sampler,
        batch_size: int,
        aspect_ratio_grouping: bool,
        num_workers: int,
        collate_fn,
        seed: int,
        skip_unreadable_images: bool,
    ):
        buckets = None
        if aspect_ratio_grouping:
            buckets = [0 if d["width"] > d["height"] else 1 for d in dataset]  # Detectron2's grouping rule
        self.dataset = DatasetFromList(dataset, copy=False) if isinstance(dataset, list) else dataset
        self.mapper, self.sampler, self.batch_size = mapper, sampler, batch_size
        self.buckets, self.num_workers, self.collate_fn = buckets, num_workers, collate_fn
        self.seed, self.skip_unreadable_images = seed, skip_unreadable_images
        self.rank = comm.get_rank()
        self._handed_out = 0  # batches given to the caller, resumed ones included
        self._skipped = 0

    # ---- the data ----
    def batch_stream(self, start: int = 0) -> Iterator[List[Tuple[int, int]]]:
        """Batches of (position, index) from batch `start` on."""
        if hasattr(self.sampler, "_seed"):  # Detectron2's samplers draw their permutations from this seed
            self.sampler._seed = self.seed
        stream = iter(_BatchStream(self.sampler, self.buckets, self.batch_size))
        for _ in range(start):
            next(stream)
        return stream

    def map_sample(self, position: int, index: int):
        """The mapped dict of the sample at `position` (dataset `index`), under its own seeded generators. A sample
        the mapper skips (None) or cannot read (with skip_unreadable_images) is replaced by a seeded choice."""
        for attempt in range(_MAX_REPLACEMENTS + 1):
            seed = sample_seed(self.seed, self.rank, position, attempt)
            dataset_dict = self.dataset[index]
            with _seeded_generators(seed):
                try:
                    mapped = mapped_with_file_errors(self.mapper, dataset_dict, "the training set")
                except SampleReadError as e:
                    if not self.skip_unreadable_images:
                        raise SampleReadError(f"{e}. Fix or remove it, or set {_SKIP_HINT}.") from e.__cause__
                    self._skipped += 1
                    logger.warning(
                        "Skipping an unreadable training image (%d so far in this process): %s", self._skipped, e
                    )
                    mapped = None
            if mapped is not None:
                return mapped
            index = random.Random(seed).randrange(len(self.dataset))
        raise SampleReadError(f"{_MAX_REPLACEMENTS} replacement samples in a row could not be read or were skipped")

    def __iter__(self):
        start = self._handed_out
        loader = torchdata.DataLoader(
            _MappedBatches(self, start),
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_identity,
            generator=torch.Generator().manual_seed(self.seed),  # leaves the global generator alone
            persistent_workers=False,
        )
        for batch in loader:
            self._handed_out += 1
            yield self.collate_fn(batch)

    # ---- resuming ----
    def state_dict(self) -> Dict[str, Any]:
        return {"batches": self._handed_out, "seed": self.seed}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._handed_out = int(state["batches"])
        self.seed = int(state["seed"])
        logger.info("Training loader resumes at batch %d (seed %d)", self._handed_out, self.seed)


def _from_config(cfg, mapper=None, *, dataset=None, sampler=None):
    ret = _train_loader_from_config(cfg, mapper, dataset=dataset, sampler=sampler)
    if sampler is None and type(ret["sampler"]) is TrainingSampler:
        ret["sampler"] = None  # built below from the run's seed, as for LazyConfig
    ret["seed"] = cfg.SEED
    ret["skip_unreadable_images"] = yacs_option(cfg, _SKIP.yacs)
    return ret


@configurable(from_config=_from_config)
def build_train_loader(
    dataset,
    *,
    mapper,
    sampler=None,
    total_batch_size: int,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
    collate_fn=None,
    seed: int = 0,
    skip_unreadable_images: bool = False,
) -> ResumableTrainLoader:
    """`detectron2.data.build_detection_train_loader`'s arguments (and yacs keys), plus `seed` (the run's seed: the
    trainer sets it) and `skip_unreadable_images`; returns a `ResumableTrainLoader` yielding per-process batches of
    total_batch_size / world size mapped dicts."""
    world_size = comm.get_world_size()
    if not isinstance(total_batch_size, int) or total_batch_size < 1 or total_batch_size % world_size:
        raise ValueError(
            f"total_batch_size={total_batch_size!r} (dataloader.train.total_batch_size / SOLVER.IMS_PER_BATCH): "
            f"expected a positive multiple of the number of processes ({world_size})"
        )
    if sampler is None:
        sampler = TrainingSampler(len(dataset), seed=seed)
    return ResumableTrainLoader(
        dataset,
        mapper=mapper,
        sampler=sampler,
        batch_size=total_batch_size // world_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
        collate_fn=collate_fn or trivial_batch_collator,
        seed=seed,
        skip_unreadable_images=skip_unreadable_images,
    )
