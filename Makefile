# pgmart: `make demo` sets everything up and runs the demo; `make test` runs every test.
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
	@bash scripts/test.sh

# Benchmarks (not part of `make test`): each prints pgmart's figure beside its anchor's.
bench: setup
	@bash scripts/install.sh /usr/bin/pg_config --release
	.venv/bin/python -m pytest pg_test -q -s -m bench -p no:cacheprovider

# Fast loop while developing: pure Rust tests only.
unit:
	cargo pgrx test pg15 -- --skip pg_
