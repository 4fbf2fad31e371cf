"""Shared by the tests of prefopt/evaluation: the tiny random model's config and tokenizer, and a way to move a
model's weights off their initial values."""

import pytest
import torch

from prefopt.models import load_tokenizer
from tests.conftest import compose_config

SMALL = ["model=tiny-random", "logger=none", "dataset.num_train=16", "dataset.num_eval=16"]


def perturb(model, scale, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(compose_config(*SMALL).model)
