"""conf/ref/: every choice composes, base is the default, and precomputed reaches TRL's config."""

import pytest

from prefopt.run import trl_config
from tests.conftest import CONF, compose_config


def test_the_four_choices_exist_and_base_is_the_default():
    assert sorted(p.stem for p in (CONF / "ref").glob("*.yaml")) == ["base", "model", "precomputed", "sft_adapter"]
    assert compose_config().ref.name == "base"


@pytest.mark.parametrize("method", ["dpo", "ipo", "kto"])
@pytest.mark.parametrize("ref", ["base", "precomputed"])
def test_precomputed_sets_trls_precompute_ref_log_probs(method, ref):
    cfg = compose_config(f"method={method}", f"ref={ref}")
    assert trl_config(cfg).precompute_ref_log_probs is (ref == "precomputed")


def test_a_key_of_another_choice_is_an_error():
    with pytest.raises(Exception, match="adapter_path"):
        compose_config("ref.adapter_path=/tmp/x")  # ref=base has no adapter: forgetting ref=sft_adapter must not pass
