"""datasets internals: a Dataset's indices mapping, fingerprint and cache-file naming."""

from __future__ import annotations

from prefopt.compat import Reliance

RELIANCES = [
    Reliance(
        "datasets",
        "datasets.Dataset._indices",
        "read",
        "prefopt.data.cache.content_hash, prefopt.ref_cache.content_keyed",
        "a selected or shuffled dataset keeps its rows behind an indices mapping; hashing or re-keying it needs the "
        "rows flattened first",
        instance_attribute=True,
    ),
    Reliance(
        "datasets",
        "datasets.Dataset._fingerprint",
        "read",
        "prefopt.ref_cache.ContentKeyedReferenceCache",
        "TRL keys its cached reference log-probs by it; the log line names the file TRL looks for",
        instance_attribute=True,
    ),
    Reliance(
        "datasets",
        "datasets.Dataset._get_cache_file_path",
        "read",
        "prefopt.ref_cache.ContentKeyedReferenceCache",
        "the path of TRL's cache file for a key, to say whether it was reused",
    ),
]


def flat(dataset):
    """The dataset with its rows in order in its own table (no indices mapping)."""
    return dataset.flatten_indices() if dataset._indices is not None else dataset


def fingerprint(dataset) -> str:
    return dataset._fingerprint


def cache_file_path(dataset, key: str) -> str:
    return dataset._get_cache_file_path(key)
