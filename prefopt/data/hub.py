"""Converters from public preference datasets to TRL's conversational format.

Each converter maps one raw row to {"prompt": [messages], "chosen": [messages], "rejected": [messages]}
(or {"prompt", "completion", "label"} for unpaired data), and returns None for a row it cannot use.
"""

from __future__ import annotations

import re

# hh-rlhf transcripts alternate "\n\nHuman: ..." and "\n\nAssistant: ..." turns.
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def _hh_messages(transcript: str) -> list[dict]:
    parts = _HH_TURN.split(transcript)
    # parts = [preamble, role, text, role, text, ...]
    return [
        {"role": "user" if role == "Human" else "assistant", "content": text.strip()}
        for role, text in zip(parts[1::2], parts[2::2])
    ]


def hh_rlhf_row(row: dict) -> dict | None:
    """Anthropic/hh-rlhf: the prompt is everything before the LAST assistant turn (multi-turn kept).

    Splitting at the first turn instead would train on the whole rest of the dialogue as the answer.
    """
    chosen, rejected = _hh_messages(row["chosen"]), _hh_messages(row["rejected"])
    if len(chosen) < 2 or chosen[-1]["role"] != "assistant" or rejected[-1:] and rejected[-1]["role"] != "assistant":
        return None
    prompt = chosen[:-1]
    if rejected[:-1] != prompt:  # both sides must answer the same conversation
        return None
    return {"prompt": prompt, "chosen": chosen[-1:], "rejected": rejected[-1:]}


def ultrafeedback_row(row: dict) -> dict | None:
    """HuggingFaceH4/ultrafeedback_binarized: chosen/rejected are full message lists ending in the answer."""
    chosen, rejected = row["chosen"], row["rejected"]
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return None
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def kto_mix_row(row: dict) -> dict | None:
    """trl-lib/kto-mix-14k: already unpaired, {"prompt": [messages], "completion": [messages], "label": bool}."""
    if not row["prompt"] or not row["completion"]:
        return None
    return {"prompt": row["prompt"], "completion": row["completion"], "label": bool(row["label"])}


# format name -> (converter, the raw columns it reads)
CONVERTERS = {
    "hh-rlhf": (hh_rlhf_row, ("chosen", "rejected")),
    "ultrafeedback": (ultrafeedback_row, ("chosen", "rejected")),
    "kto-mix": (kto_mix_row, ("prompt", "completion", "label")),
}
