# Burrow: `make serve` sets up and runs Burrow with the default model; `make test` runs every test.
# Both install what they need first, on a fresh Debian machine with a Rust toolchain.

MODEL := .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
BURROW := target/release/burrow
WASM_TARGET := wasm32-unknown-unknown
# Crates that must also build for the browser.
WASM_CRATES := -p burrow-gguf -p burrow-text -p burrow-model

.PHONY: setup model fixtures build test test-native test-wasm test-web serve fuzz

setup:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@# Mesa's lavapipe: a CPU Vulkan driver, the wgpu adapter the GPU kernels are tested on here.
	@dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq mesa-vulkan-drivers)

model:
	@scripts/fetch_model.sh

fixtures:
	@scripts/fetch_fixtures.sh

build:
	@# The whole workspace, so Burn is built with the same features as for the tests.
	cargo build --release --workspace

test: setup model fixtures test-wasm test-web test-native

test-native: model fixtures
	@# --tests: no doc-test runs, which have nothing to run and would close the output on "0 passed".
	cargo test --release --workspace --tests

test-wasm: setup
	cargo build --target $(WASM_TARGET) $(WASM_CRATES)

# The browser side (store, service worker, manifest, UI, API) in Debian's headless Chromium.
test-web: model
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	npm ci --no-audit --no-fund
	npm test

# Until the browser app lands: an interactive chat with the default model in the terminal.
serve: model build
	$(BURROW) chat --model $(MODEL)

# Fuzz the GGUF parser (see crates/gguf/fuzz/README.md).
fuzz:
	cd crates/gguf/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run parse -- -max_total_time=$${FUZZ_SECONDS:-300}
