# iatools: `make demo` runs the whole pipeline against the bundled archive.org
# emulator (offline); `make test` runs the test suite.  Both set up .venv first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PREFIX ?= /usr/local
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
COMMANDS := $(notdir $(wildcard bin/ia-*))

.PHONY: all demo test bench install install-completion uninstall clean

all: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	./tests/demo.sh

# Two workers: most tests wait on pipes, signals, children and the emulator,
# so two keep two cores busy (each test has its own directories and ports).
TEST_WORKERS ?= 2

test: $(VENV)/.installed
	./tests/setup-system.sh
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests

# Byte-compile first: where PYTHONDONTWRITEBYTECODE is set, an edited module
# would otherwise be compiled anew by every command started (tens of ms).
bench: $(VENV)/.installed
	./tests/bench/setup-system.sh
	$(PY) -m compileall -q iatools >/dev/null
	$(PY) -m tests.bench

install:
	$(PYTHON) -m pip install .
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	install -m 644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/*.7 $(DESTDIR)$(MANDIR)/man7/
	$(MAKE) install-completion

# Generated from the parsers of this checkout: bash-completion loads a
# command's file when the command is first completed; zsh reads _iatools
# from its fpath (site-functions is on it by default).
install-completion:
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	for command in $(COMMANDS); do \
	  PYTHONPATH=. $(PYTHON) -m iatools.commands.completion bash $$command \
	    > $(DESTDIR)$(BASHCOMPDIR)/$$command || exit 1; \
	done
	PYTHONPATH=. $(PYTHON) -m iatools.commands.completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_iatools

uninstall:
	$(PYTHON) -m pip uninstall -y iatools
	cd $(DESTDIR)$(MANDIR) && rm -f $(patsubst man/%,man1/%,$(wildcard man/*.1)) \
	  $(patsubst man/%,man7/%,$(wildcard man/*.7))
	cd $(DESTDIR)$(BASHCOMPDIR) && rm -f $(COMMANDS)
	rm -f $(DESTDIR)$(ZSHCOMPDIR)/_iatools

clean:
	rm -rf $(VENV) demo build *.egg-info
