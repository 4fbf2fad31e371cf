"""Datasets kept on disk under a content key, so TRL's own caches hit across runs.

TRL writes its tokenized rows and, with `precompute_ref_log_probs`, the reference log-probs as cache files next
to a dataset's Arrow files, keyed by the dataset and the reference model. An in-memory dataset has nowhere to put
them (they land in a temporary folder that dies with the process); a dataset stored under
~/.cache/pref-recipes/datasets/<content hash> gives every job of a sweep, a rerun and a resumed run the same files.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pyarrow as pa
from datasets import Dataset, load_from_disk

from prefopt.compat.datasets import flat
from prefopt.models import cache_dir


def content_hash(dataset: Dataset) -> str:
    """A hash of the rows themselves (Arrow IPC bytes), the same in every process and for every file holding them."""
    digest = hashlib.sha256()
    table = flat(dataset).data.table
    for batch in table.to_batches(max_chunksize=8192):
        batch = batch.replace_schema_metadata(None)  # datasets keeps its lineage fingerprint there
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue())
    return digest.hexdigest()[:16]


def on_disk(dataset: Dataset, split: str) -> Dataset:
    """The same rows, stored once per content and loaded from disk."""
    dataset = dataset.flatten_indices()
    folder = cache_dir() / "datasets" / f"{split}-{content_hash(dataset)}"
    if not (folder / "dataset_info.json").is_file():
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        dataset.save_to_disk(str(partial))
        try:
            os.replace(partial, folder)  # atomic; another process may have stored the same rows first
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return load_from_disk(str(folder))
