# Two commands a newcomer needs: `make run` and `make test`. Each installs what it needs first.
# `make check` is a third, for developers: the fast tests only, after `make test`'s install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test
export POCDIR_DATABASE_URL ?= sqlite:///var/pocdir.sqlite3

.PHONY: run test check lint install clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $@

install: $(STAMP)

# The simulated period starts on 2025-01-06; 400 days take it past the first annual deadlines.
DEMO_END := 2026-02-10
# The demo runs encrypted (R13): its key is made once, in var/ (git-ignored), mode 0600.
DEMO_KEY := var/demo-cipher.key
# The Secretariat's operator key and the server's own key sign what each records (issue 15).
DEMO_OPERATOR := var/demo-operator.key
DEMO_SERVER   := var/demo-server.key
# The delivery key (issue 17): the demo's alerts go to var/outbox/, one .eml per message,
# unless POCDIR_SMTP_HOST names a mail server.
DEMO_DELIVERY := var/demo-delivery.key
KEYED    := POCDIR_CIPHER_KEY="$$(cat $(DEMO_KEY))" POCDIR_OPERATOR_KEY_FILE=$(DEMO_OPERATOR) POCDIR_SIGNING_KEY_FILE=$(DEMO_SERVER) POCDIR_DELIVERY_KEY_FILE=$(DEMO_DELIVERY)

## run: simulate a year for all 193 States (once), verify it, show the views, serve the API.
run: $(STAMP)
	@mkdir -p var
	$(BIN)/pocdir keys cipher-init $(DEMO_KEY)
	@test -f $(DEMO_OPERATOR) || $(KEYED) $(BIN)/pocdir keys generate $(DEMO_OPERATOR) --name operator.demo.example
	@test -f $(DEMO_SERVER) || $(KEYED) $(BIN)/pocdir keys generate $(DEMO_SERVER)
	@test -f $(DEMO_DELIVERY) || $(KEYED) $(BIN)/pocdir keys generate $(DEMO_DELIVERY) --name delivery.demo.example
	$(KEYED) $(BIN)/pocdir simulate --states 193 --days 400 --seed 1 --if-empty
	$(KEYED) $(BIN)/pocdir verify
	$(KEYED) $(BIN)/pocdir pending --today $(DEMO_END)
	$(KEYED) $(BIN)/pocdir route DEU malware --level technical
	$(KEYED) $(BIN)/pocdir review --from 2025-01-06 --to $(DEMO_END) --out var/review.html
	$(KEYED) $(BIN)/pocdir serve --host 127.0.0.1 --port 8000 --review-period 2025-01-06:$(DEMO_END)

## browser: Debian's headless Chromium and its driver, for the review report's rendering test.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

## test: the whole suite, on SQLite and on PostgreSQL, plus lint, type checks and the import contracts.
test: $(TSTAMP) browser
	$(BIN)/ruff check domain projections api infra simulation state_client tests bench
	$(BIN)/mypy domain projections api infra simulation state_client
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

## check: the tests not marked slow, without lint, one worker per core (under a minute; `make test` runs them all).
check: $(TSTAMP)
	$(BIN)/python -m pytest -m "not slow" -q -n auto

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
