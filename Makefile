# The two commands: `make run` (the product) and `make test` (every check).
.PHONY: run test install stop lint audit

run:
	@scripts/bootstrap.sh
	@.venv/bin/python scripts/run.py

test:
	@scripts/test.sh

install:
	@scripts/bootstrap.sh dev

stop:
	@.venv/bin/python scripts/services.py stop --profile run

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && ENVIRONMENT=test .venv/bin/mypy . && .venv/bin/lint-imports && .venv/bin/cfn-lint deploy/cloudformation/*.yaml

# Known vulnerabilities in every requirements*.txt (pip-audit). Needs network access to the
# vulnerability database, so it is not part of `make test`; see docs/security.md.
audit:
	@python3 scripts/audit.py
