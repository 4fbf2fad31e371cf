"""Will a training step fit in GPU memory? An estimate from the model's shape, and the micro-batch, gradient
accumulation and activation checkpointing that fit a `conf/hardware/` preset, the effective batch kept.

Run: `make train-dpo model=llama3-8b peft=lora hardware=40gb ARGS="dry_run=true"` prints the estimate and the
choice without loading anything; without dry_run the launcher trains with that choice.

What is counted, per device, at the peak of a step (the backward pass, once the optimizer holds its state):
- weights: 2 bytes per parameter in bf16/fp16, 4 in fp32. QLoRA: the decoder layers' linears in nf4, half a byte
  plus the double-quantized block constants; embeddings, LM head and norms stay in the compute dtype.
- training state. Full fine-tuning: gradients and AdamW's two moments in the parameters' dtype. The Trainer keeps
  no fp32 master copy: a model loaded in bf16 trains in pure bf16 (torch's AdamW allocates its moments like the
  parameters), 8 bytes per parameter with the weights. LoRA: peft upcasts the adapters to fp32 (weights, gradients,
  moments: 16 bytes per adapter parameter); QLoRA: TRL casts them to bf16 (8 bytes).
- reference: a frozen second copy of the weights for peft=none with ref=base, for ref=model (assumed the policy's
  size) and under data parallelism; nothing for LoRA (the base with the adapter disabled), for ref=precomputed
  (log-probs computed before training) and for methods without one (ORPO, SimPO, CPO, SFT).
- activations of rows x max_length tokens per micro-batch (paired methods run chosen and rejected: 2 rows per
  example; KTO and SFT 1). Per token and layer ~(10 h + 4 i + 2 kv) values are kept (norm inputs in fp32, q/k/v and the
  attention output, SwiGLU's four intermediate-sized tensors); with checkpointing only each layer's input plus one
  layer in full while it is recomputed; plus a few hidden-sized tensors outside the layers. fp32 adapters over bf16
  activations add the layer in flight's inputs cast to fp32. TRL's DPOTrainer, KTOTrainer and SFTTrainer compute log-probs
  in chunks and never hold the logits; other trainers (ORPO, CPO/SimPO) hold them with their fp32 log-softmax, counted
  here for every token (the recipes' scoring head holds those of the scored tokens only: an upper bound for them).

Calibrated: LAYER_FACTOR and EXTRA_HIDDEN are fitted to torch.cuda.max_memory_allocated of plain TRL 1.16 /
transformers 5.24 DPO on a random-init Llama-3-8B shape, LoRA r16 all-linear, bf16, 4 pairs x 2 x 1024 tokens:
20.1 GiB with checkpointing (H200), 69.6 GiB without (H100); estimates 20.1 and 69.4. A third measurement, not
fitted, checks them: QLoRA nf4 with double quantization, checkpointing on, peaked at 9.5 GiB with 5.2 GiB of
weights by get_memory_footprint (which leaves out the ~0.1 GiB of quantization constants); the estimate says 9.6
and 5.3 (tests/prefopt/test_memory.py). The fp32-adapter term is what tells LoRA and QLoRA apart at the same shape.
Not calibrated, formulas only: full fine-tuning, fp32, other shapes and lengths, KTO, the full-logits term.
Not counted: the CUDA context and allocator fragmentation (the preset's headroom_gib), evaluation batches
(per_device_eval_batch_size, no gradients), sharding (launcher=fsdp/zero3 split weights and optimizer state; the
estimate is one whole copy per device).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from prefopt.errors import RecipeError
from prefopt.model_setup import ModelSetup
from prefopt.recipe import Recipe

if TYPE_CHECKING:
    from prefopt.run import RunPlan

log = logging.getLogger(__name__)

GIB = 2**30
BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit values, an 8-bit absmax per 64, an fp32 absmax per 256 blocks
LAYER_FACTOR = 1.08  # measured over counted layer activations: LoRA's dropout masks and adapter inputs on top
EXTRA_HIDDEN = 4.5  # hidden-sized values per token outside the layers: embeddings, final norm, gradients in flight
LOGIT_EXTRA_BYTES = 8  # per vocabulary entry and token with full logits: their fp32 log-softmax and its gradient
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    """The numbers of a decoder's config.json the estimate needs (Llama/Mistral/Qwen2 layout; biases ignored)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    tie_word_embeddings: bool = False

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        kv = self.num_key_value_heads * h // self.num_attention_heads
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_parameters(self) -> int:
        return self.num_hidden_layers * sum(a * b for a, b in self.linears().values())

    @property
    def num_parameters(self) -> int:
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return embeddings + self.linear_parameters + (2 * self.num_hidden_layers + 1) * self.hidden_size

    @property
    def layer_values(self) -> int:
        """Values one decoder layer keeps per token for its backward pass, counted in the activations' dtype."""
        h, i = self.hidden_size, self.intermediate_size
        return 10 * h + 4 * i + 2 * self.linears()["k_proj"][1]


@dataclass(frozen=True)
class Setup:
    """Everything but the batch that decides the memory of a training step."""

    shape: Shape
    precision: str = "bf16"  # bf16, fp16, fp32: the weights' and activations' dtype
    peft: str = "lora"  # none, lora, qlora
    lora_r: int = 16
    adapted: tuple[str, ...] = LINEARS  # the linears with an adapter (all-linear: every one)
    reference: str = "none"  # none, copy (a frozen second model), adapter (a frozen copy of the adapter)
    rows_per_example: int = 2  # chosen and rejected
    max_length: int = 1024  # tokens per row, the worst case: rows are padded to the longest of the batch
    fused_head: bool = True  # log-probs computed in chunks, the logits never held whole


@dataclass(frozen=True)
class Estimate:
    """GiB at the peak of a training step, by what holds them."""

    weights: float
    training_state: float
    reference: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.training_state + self.reference + self.activations


def adapter_parameters(setup: Setup) -> int:
    if setup.peft == "none":
        return 0
    per_layer = sum(setup.lora_r * (a + b) for name, (a, b) in setup.shape.linears().items() if name in setup.adapted)
    return setup.shape.num_hidden_layers * per_layer


def estimate(setup: Setup, micro_batch: int, checkpointing: bool) -> Estimate:
    shape, act = setup.shape, BYTES[setup.precision]
    if setup.peft == "qlora":
        weights = shape.linear_parameters * NF4_BYTES + (shape.num_parameters - shape.linear_parameters) * act
    else:
        weights = shape.num_parameters * act
    adapter_bytes = {"none": 0, "lora": 4, "qlora": 2}[setup.peft]
    adapters = adapter_parameters(setup)
    state = 3 * weights if setup.peft == "none" else 4 * adapter_bytes * adapters  # (weights,) gradients, 2 moments
    reference = {"none": 0, "copy": weights, "adapter": adapter_bytes * adapters}[setup.reference]

    layer = LAYER_FACTOR * shape.layer_values
    kept = shape.num_hidden_layers * (shape.hidden_size if checkpointing else layer) + (layer if checkpointing else 0)
    per_token = (kept + EXTRA_HIDDEN * shape.hidden_size) * act
    adapted_inputs = sum(a for name, (a, _) in shape.linears().items() if name in setup.adapted)
    per_token += adapted_inputs * max(0, adapter_bytes - act)  # one layer's inputs cast up for fp32 adapters
    if not setup.fused_head:
        per_token += shape.vocab_size * (act + LOGIT_EXTRA_BYTES)
    tokens = setup.rows_per_example * micro_batch * setup.max_length
    return Estimate(weights / GIB, state / GIB, reference / GIB, tokens * per_token / GIB)


@dataclass(frozen=True)
class Choice:
    micro_batch: int
    accumulation: int
    checkpointing: bool
    estimate: Estimate


def micro_batches(effective_batch: int, smallest: int = 1) -> list[int]:
    """The micro-batches that split the effective batch evenly, largest first."""
    smallest = min(smallest, effective_batch)
    return [m for m in range(effective_batch, 0, -1) if effective_batch % m == 0 and m >= smallest]


# Tokens per micro-batch that keep a GPU busy. Measured on an H200 (LoRA on a Llama-3-8B shape, bf16, 1,024-token
# rows; docs/performance.md): 8,192 tokens ran 1.24x faster without checkpointing than with it, but 2,048 tokens
# without checkpointing ran at 0.69x of 8,192 with it: a small micro-batch idles the GPU longer than recomputing costs.
BUSY_TOKENS = 8192


def micro_batch_tokens(setup: Setup, micro_batch: int) -> int:
    return setup.rows_per_example * micro_batch * setup.max_length


def largest_fit(setup: Setup, effective_batch: int, budget_gib: float, smallest: int, checkpointing: bool):
    """The largest micro-batch that splits the effective batch and fits, as a Choice; None when none fits."""
    for micro in micro_batches(effective_batch, smallest):
        found = estimate(setup, micro, checkpointing)
        if found.total <= budget_gib:
            return Choice(micro, effective_batch // micro, checkpointing, found)
    return None


def pick(setup: Setup, effective_batch: int, budget_gib: float, smallest: int = 1) -> Choice | None:
    """The fastest split of the effective batch that fits: without checkpointing (a third less compute) at the
    largest micro-batch that fits, when that micro-batch keeps the GPU busy (BUSY_TOKENS) or checkpointing allows no
    larger one; else with checkpointing at the largest one; None when nothing fits."""
    without = largest_fit(setup, effective_batch, budget_gib, smallest, checkpointing=False)
    with_checkpointing = largest_fit(setup, effective_batch, budget_gib, smallest, checkpointing=True)
    if without is not None and (
        micro_batch_tokens(setup, without.micro_batch) >= BUSY_TOKENS
        or without.micro_batch >= with_checkpointing.micro_batch
    ):
        return without
    return with_checkpointing


@dataclass(frozen=True)
class Plan:
    """What a config asks for, the estimate of each way to split its batch, and the choice for the preset."""

    setup: Setup
    title: str  # e.g. dpo on llama3-8b (8.03B parameters), peft=lora r16, bf16, max_length 256
    reference_why: str
    hardware: str
    budget_gib: float | None  # None: hardware=none, no budget to compare with
    headroom_gib: float | None
    effective_batch: int
    smallest: int  # the smallest micro-batch the method accepts
    configured: Choice  # the train: section as written
    choice: Choice | None  # the preset's pick; None: nothing fits

    def report(self) -> str:
        train = self.configured
        lines = [f"memory estimate: {self.title}"]
        if self.budget_gib is None:
            lines.append("hardware=none: no budget to compare with (hardware=24gb|40gb|80gb picks a split that fits)")
        else:
            memory = self.budget_gib + self.headroom_gib
            lines.append(
                f"hardware={self.hardware}: {memory:g} GiB - {self.headroom_gib:g} GiB headroom = "
                f"{self.budget_gib:g} GiB for the training step"
            )
        lines.append(
            f"effective batch {self.effective_batch} (per_device_train_batch_size {train.micro_batch} x "
            f"gradient_accumulation_steps {train.accumulation} as configured)"
        )
        shown = self.choice or (train if self.budget_gib is None else None)
        lines += [
            "",
            "micro-batch  accumulation  tokens  no checkpointing  checkpointing   (* "
            + ("configured)" if self.budget_gib is None else "chosen)"),
        ]
        for micro in micro_batches(self.effective_batch, self.smallest):
            cells = []
            for checkpointing, width in ((False, 16), (True, 13)):
                mark = "* " if shown and (shown.micro_batch, shown.checkpointing) == (micro, checkpointing) else ""
                cells.append(f"{mark}{estimate(self.setup, micro, checkpointing).total:.1f} GiB".rjust(width))
            tokens = micro_batch_tokens(self.setup, micro)
            lines.append(f"{micro:11d}  {self.effective_batch // micro:12d}  {tokens:6d}  {cells[0]}  {cells[1]}")
        lines.append("")
        if shown is None:
            lines.append(f"nothing fits in {self.budget_gib:g} GiB.")
            return "\n".join(lines)
        why = "as configured" if self.budget_gib is None else self._why(shown)
        lines.append(
            f"{'configured' if self.budget_gib is None else 'chosen'}: micro-batch {shown.micro_batch} x "
            f"accumulation {shown.accumulation}, activation checkpointing "
            f"{'on' if shown.checkpointing else 'off'} ({why})"
        )
        lines += _breakdown(self.setup, shown.estimate, self.reference_why, self.budget_gib)
        return "\n".join(lines)

    def _why(self, chosen: Choice) -> str:
        if not chosen.checkpointing:
            return "the largest micro-batch that fits without checkpointing"
        without = largest_fit(self.setup, self.effective_batch, self.budget_gib, self.smallest, checkpointing=False)
        if without is None:
            return "nothing fits without checkpointing; the largest micro-batch that fits with it"
        tokens = micro_batch_tokens(self.setup, without.micro_batch)
        return (
            f"without checkpointing at most micro-batch {without.micro_batch} fits: {tokens} tokens, fewer than the "
            f"{BUSY_TOKENS} a GPU needs to stay busy; so the largest micro-batch that fits with it"
        )

    def unfit_message(self) -> str:
        cheapest = estimate(self.setup, micro_batches(self.effective_batch, self.smallest)[-1], True)
        todo = []
        if self.setup.peft != "qlora":
            todo.append("peft=lora or peft=qlora" if self.setup.peft == "none" else "peft=qlora")
        if self.setup.reference == "copy":
            todo.append("ref=precomputed (no reference model in memory)")
        todo += ["a bigger hardware= preset", f"a smaller train.max_length (now {self.setup.max_length})"]
        return (
            f"hardware={self.hardware}: {self.title} does not fit in {self.budget_gib:g} GiB, not even at micro-batch "
            f"{micro_batches(self.effective_batch, self.smallest)[-1]} with activation checkpointing: "
            f"{cheapest.total:.1f} GiB (weights {cheapest.weights:.1f}, training state {cheapest.training_state:.1f}, "
            f"reference {cheapest.reference:.1f}, activations {cheapest.activations:.1f}). Try "
            + ", ".join(todo)
            + " (dry_run=true prints the whole estimate)."
        )


def _breakdown(setup: Setup, found: Estimate, reference_why: str, budget_gib: float | None) -> list[str]:
    if setup.peft == "none":
        state = f"gradients + AdamW moments ({setup.precision})"
    else:
        state = f"adapters r{setup.lora_r}, {'bf16' if setup.peft == 'qlora' else 'fp32'}: weights, grads, AdamW"
    weights = f"weights ({'nf4 + ' if setup.peft == 'qlora' else ''}{setup.precision})"
    rows = [
        (weights, found.weights),
        (state, found.training_state),
        (f"reference: {reference_why}", found.reference),
        ("activations", found.activations),
    ]
    total = f"{found.total:8.2f} GiB" + ("" if budget_gib is None else f" of {budget_gib:g} GiB")
    width = max(len(name) for name, _ in rows)
    return [f"  {name:<{width}}  {gib:8.2f} GiB" for name, gib in rows] + [f"  {'total':<{width}}  {total}"]


def model_shape(model_cfg: DictConfig) -> Shape:
    """From the model config's `shape:` block (Hub models) or the `init_config` it is built from (tiny-random)."""
    numbers = model_cfg.get("shape") or model_cfg.get("init_config")
    names = [f.name for f in dataclasses.fields(Shape)]
    missing = [n for n in names[:-1] if numbers is None or numbers.get(n) is None]
    if missing:
        raise RecipeError(
            f"model '{model_cfg.name}' has no {', '.join(missing)} for the memory estimate: add a shape: block with "
            f"the numbers of its config.json to conf/model/{model_cfg.name}.yaml (see llama3-8b.yaml), or use "
            f"hardware=none."
        )
    return Shape(**{n: numbers[n] for n in names if numbers.get(n) is not None})


def _positive_int(cfg: DictConfig, key: str) -> int:
    value = cfg.train.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RecipeError(f"train.{key}={value!r}: the memory estimate needs a whole number >= 1.")
    return value


def setup_of(cfg: DictConfig, recipe: Recipe, models: ModelSetup, precision: str) -> Setup:
    """The model, adapters, reference and method of the composed config, as the estimate sees them."""
    if not cfg.train.get("max_length"):
        raise RecipeError("train.max_length is not set: the memory estimate needs the tokens per row.")
    targets = cfg.peft.get("target_modules", "all-linear")
    return Setup(
        shape=model_shape(cfg.model),
        precision=precision,
        peft=models.peft,
        lora_r=cfg.peft.get("r", 0) or 0,
        adapted=tuple(n for n in LINEARS if isinstance(targets, str) or n in targets),  # a regex string: assume all
        reference=models.reference_memory[0],
        rows_per_example=2 if recipe.data_format == "paired" else 1,
        max_length=int(cfg.train.max_length),
        fused_head=recipe.fused_lm_head,
    )


def plan(cfg: DictConfig, recipe: Recipe, models: ModelSetup) -> Plan:
    """The estimate for the composed config and, with a hardware preset, the split of its batch that fits."""
    preset = cfg.get("hardware")
    hardware = preset.name if preset is not None else "none"
    budget = headroom = None
    if hardware != "none":
        headroom = float(preset.headroom_gib or 0)
        budget = float(preset.memory_gib) - headroom
        if budget <= 0:
            raise RecipeError(f"hardware={hardware}: memory_gib must exceed headroom_gib (conf/hardware/).")
    # A preset plans a GPU run, wherever the plan is made: precision=auto is then bf16 (fp16 has the same size).
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if budget else models.precision)
    setup = setup_of(cfg, recipe, models, precision)
    micro = _positive_int(cfg, "per_device_train_batch_size")
    accumulation = _positive_int(cfg, "gradient_accumulation_steps")
    checkpointing = bool(cfg.train.get("activation_checkpointing"))
    smallest = 2 if recipe.data_format == "unpaired" else 1  # KTO's KL term mixes the rows of a micro-batch

    n = setup.shape.num_parameters
    where = "" if cfg.precision != "auto" else " (precision=auto on a GPU)" if budget else " (precision=auto here)"
    title = (
        f"{cfg.method.name} on {cfg.model.name} ({f'{n / 1e9:.2f}B' if n >= 1e9 else f'{n / 1e6:.1f}M'} "
        f"parameters), peft={cfg.peft.name}{f' r{setup.lora_r}' if setup.peft != 'none' else ''}, "
        f"{precision}{where}, max_length {setup.max_length}"
    )
    return Plan(
        setup=setup,
        title=title,
        reference_why=models.reference_memory[1],
        hardware=hardware,
        budget_gib=budget,
        headroom_gib=headroom,
        effective_batch=micro * accumulation,
        smallest=smallest,
        configured=Choice(micro, accumulation, checkpointing, estimate(setup, micro, checkpointing)),
        choice=pick(setup, micro * accumulation, budget, smallest) if budget else None,
    )


def apply(cfg: DictConfig, found: Plan) -> None:
    """Write the preset's choice into cfg.train, where TRL's config is built from; fail when nothing fits."""
    if found.budget_gib is None:
        return
    if found.choice is None:
        raise RecipeError(found.unfit_message())
    cfg.train.per_device_train_batch_size = found.choice.micro_batch
    cfg.train.gradient_accumulation_steps = found.choice.accumulation
    cfg.train.activation_checkpointing = found.choice.checkpointing


def fit_hardware(cfg: DictConfig, recipe: Recipe, models: ModelSetup) -> None:
    """hardware=24gb|40gb|80gb: the preset owns micro-batch, accumulation and checkpointing; it keeps the effective
    batch (train.per_device_train_batch_size x train.gradient_accumulation_steps as configured). hardware=none: the
    train: section as written, no estimate."""
    preset = cfg.get("hardware")
    if preset is None or preset.name == "none":
        return
    found = plan(cfg, recipe, models)
    log.info("%s", found.report())
    apply(cfg, found)


def dry_run(cfg: DictConfig, run_dir: Path, run: RunPlan) -> None:
    """dry_run=true: print the estimate and the preset's choice; load no weights, reach no Hub, keep no run directory.

    A setting that fits nowhere fails as the real run would, its log kept like any failed run's. Hydra made the run
    directory before the job started: it is removed when it holds only what Hydra wrote then (a directory with
    anything else in it is left as it was).
    """
    fresh = _hydra_only(run_dir)
    found = plan(cfg, run.recipe, run.setup)
    print(found.report(), flush=True)
    apply(cfg, found)
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_empty_parents(run_dir)


def _hydra_only(run_dir: Path) -> bool:
    from prefopt import console
    from prefopt.run_lock import LOCK_FILE

    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    return names <= {".hydra", "train.log", LOCK_FILE} and not console.log_had_lines_before_this_run


def _remove_empty_parents(run_dir: Path) -> None:
    """outputs/<method>/<model>/ that Hydra made for this run alone; never above the working directory."""
    cwd = Path.cwd().resolve()
    for parent in run_dir.resolve().parents:
        if parent == cwd or cwd not in parent.parents:
            return
        try:
            parent.rmdir()  # only when empty
        except OSError:
            return
