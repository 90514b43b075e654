# pgmart: `make demo` sets everything up and runs the demo (PostgreSQL 15, Debian's); `make test` runs
# every test: #[pg_test] on PostgreSQL 15..18, end-to-end on 15 and 18. `make test PG=17` tests one
# version only (unit tests, #[pg_test] and end-to-end on 17).
.PHONY: setup install demo demo-stop test bench unit

setup:
	@bash scripts/setup.sh

install: setup
	@bash scripts/install.sh

demo: install
	@bash scripts/demo.sh

demo-stop:
	@bash scripts/demo.sh stop

test: setup
	@PG="$(PG)" bash scripts/test.sh

# Benchmarks (not part of `make test`): each prints pgmart's figure beside its anchor's.
bench: setup
	@bash scripts/install.sh /usr/bin/pg_config --release
	.venv/bin/python -m pytest pg_test -q -s -m bench -p no:cacheprovider

# Fast loop while developing: pure Rust tests only.
unit:
	cargo pgrx test pg15 -- --skip pg_
