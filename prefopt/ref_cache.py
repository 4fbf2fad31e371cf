"""Reference log-probs computed once per (tokenized rows, reference weights) and reused by every later run.

TRL's `precompute_ref_log_probs` already stores them as a cache file beside the dataset, keyed by the dataset's
fingerprint and a hash of the reference weights. But the fingerprint of TRL's tokenized dataset also hashes the
trainer's arguments (beta among them), so each job of a beta sweep missed the cache. Keying by the tokenized
rows' content makes the key exactly what the log-probs depend on: token ids, reference model, and (through the
ids) tokenizer, chat template and max_length. Used with datasets stored on disk (prefopt.data.cache).
"""

from __future__ import annotations

import logging
import os

from datasets import Dataset
from datasets.fingerprint import Hasher

from prefopt.compat.datasets import cache_file_path, fingerprint, flat
from prefopt.data.cache import content_hash

log = logging.getLogger(__name__)


def content_keyed(dataset: Dataset) -> Dataset:
    """The same rows and files under a fingerprint that depends only on their content."""
    dataset = flat(dataset)
    return Dataset(dataset.data, info=dataset.info, split=dataset.split, fingerprint=content_hash(dataset))


class ContentKeyedReferenceCache:
    """Mix into a TRL trainer that has `_precompute_ref_logps` (DPOTrainer, KTOTrainer)."""

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        dataset = content_keyed(dataset)
        # The file TRL looks for (same key as trl's DPOTrainer/KTOTrainer._precompute_ref_logps), to say which it is.
        key = (fingerprint(dataset), self._precompute_model_hash)
        key += (self.calculate_KL,) if hasattr(self, "calculate_KL") else ()  # KTO keys by its KL term too
        cache_file = cache_file_path(dataset, Hasher.hash(key))
        reused = os.path.exists(cache_file)
        result = super()._precompute_ref_logps(dataset, name, batch_size)
        log.info(
            "reference log-probs for %s: %s %s", name, "reused from" if reused else "computed and cached in", cache_file
        )
        return result
