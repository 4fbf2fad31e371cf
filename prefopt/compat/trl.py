"""TRL's private methods and attributes that prefopt.trainers and prefopt.trainers_experimental override or read
(TRL 1.16).

The overrides live in the trainer subclasses themselves; this list is what to recheck when TRL changes. The tests
that hold each fast trainer to TRL's own loss, metrics and gradients (tests/prefopt/test_trainers.py,
test_trainers_experimental.py, test_shared_prompt.py, test_lm_head.py, test_loss_crosscheck.py) catch a change in
what these do.
"""

from __future__ import annotations

from prefopt.compat import Reliance

RELIANCES = [
    Reliance(
        "trl",
        "trl.DPOTrainer._compute_loss",
        "overridden",
        "prefopt.trainers.FastDPOTrainer._compute_loss",
        "runs TRL's loss inside shared-prompt rows (one row per pair, the prompt computed once)",
    ),
    Reliance(
        "trl",
        "trl.DPOTrainer._precompute_ref_logps",
        "overridden",
        "prefopt.ref_cache.ContentKeyedReferenceCache, prefopt.trainers.FastDPOTrainer",
        "TRL calls it from __init__ to precompute reference log-probs; ours keys the cache by content and patches "
        "the models first",
    ),
    Reliance(
        "trl",
        "trl.KTOTrainer._precompute_ref_logps",
        "overridden",
        "prefopt.ref_cache.ContentKeyedReferenceCache, prefopt.trainers.FastKTOTrainer",
        "as DPOTrainer's; KTO keys by its KL term too (calculate_KL); ours patches the models first",
    ),
    Reliance(
        "trl",
        "trl.KTOTrainer._compute_loss",
        "read",
        "prefopt.trainers.FastKTOTrainer.compute_loss, prefopt.trainers.FastKTOTrainer._packed_rows",
        "method.sft_weight reads the log-probs of its first policy forward on the batch's input_ids (first_output_on); "
        "share_prompt serves its forwards in pairs from one computation each (prefopt.shared_prompt.JointRows), "
        "relying on their order: the policy's KL rows (no_grad) then its completion rows, then the reference's",
    ),
    Reliance(
        "trl",
        "trl.experimental.orpo.ORPOTrainer.concatenated_forward",
        "overridden",
        "prefopt.trainers_experimental.FastORPOTrainer",
        "its five outputs (chosen and rejected log-probs, mean logits, the SFT loss) from shared-prompt rows",
    ),
    Reliance(
        "trl",
        "trl.experimental.orpo.ORPOTrainer.concatenated_inputs",
        "read",
        "prefopt.trainers_experimental.FastORPOTrainer",
        "the [chosen; rejected] rows TRL's forward builds, with its padding value",
    ),
    Reliance(
        "trl",
        "trl.experimental.cpo.CPOTrainer.concatenated_forward",
        "overridden",
        "prefopt.trainers_experimental.FastCPOTrainer",
        "as ORPOTrainer's, for CPO and SimPO",
    ),
    Reliance(
        "trl",
        "trl.experimental.cpo.CPOTrainer.concatenated_inputs",
        "read",
        "prefopt.trainers_experimental.FastCPOTrainer",
        "as ORPOTrainer's",
    ),
    Reliance(
        "trl",
        "trl.DPOTrainer.use_weighting",
        "read",
        "prefopt.trainers.FastDPOTrainer._patch_models",
        "whether TRL asked its head for log_sum_sq_probs (WPO weighting)",
        instance_attribute=True,
    ),
    Reliance(
        "trl",
        "trl.DPOTrainer._precompute_model_hash",
        "read",
        "prefopt.ref_cache.ContentKeyedReferenceCache",
        "the reference weights' part of the key TRL files precomputed log-probs under",
        instance_attribute=True,
    ),
    Reliance(
        "transformers",
        "transformers.Trainer._get_train_sampler",
        "overridden",
        "prefopt.trainers.FastDPOTrainer._get_train_sampler",
        "batches of pairs of similar length for train_sampling_strategy=group_by_length",
    ),
    Reliance(
        "transformers",
        "transformers.Trainer._get_eval_sampler",
        "overridden",
        "prefopt.trainers.FastDPOTrainer._get_eval_sampler",
        "sequential evaluation when training groups by length",
    ),
]
