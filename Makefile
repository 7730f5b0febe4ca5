# Burrow: `make serve` sets up and runs Burrow with the default model; `make test` runs every test.
# Both install what they need first, on a fresh Debian machine with a Rust toolchain.

MODEL := .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
BURROW := target/release/burrow
WASM_TARGET := wasm32-unknown-unknown
# Must equal the wasm-bindgen crate version pinned in crates/web/Cargo.toml.
WASM_BINDGEN_VERSION := 0.2.130
# The engine as Cargo links it (profile wasm-release, see Cargo.toml), and after wasm-opt.
WASM := target/$(WASM_TARGET)/wasm-release/burrow_web.wasm
WASM_OPT := target/$(WASM_TARGET)/wasm-release/burrow_web.opt.wasm
PORT := $(or $(BURROW_PORT),8080)
# What web/sw.js caches as the app shell (besides the engine in pkg/).
SHELL_FILES := index.html manifest.json $(sort $(wildcard web/*.js web/*.css web/icons/* web/vendor/*.mjs))

.PHONY: setup model fixtures build pkg test test-native test-wasm test-web serve fuzz

setup:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@# Mesa's lavapipe: a CPU Vulkan driver, the wgpu adapter the GPU kernels are tested on here.
	@dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq mesa-vulkan-drivers)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	@# Binaryen's wasm-opt, which shrinks the engine (make pkg).
	@command -v wasm-opt >/dev/null || (apt-get update -qq && apt-get install -y -qq binaryen)
	@wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $(WASM_BINDGEN_VERSION)" || \
		cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

model:
	@scripts/fetch_model.sh

fixtures:
	@scripts/fetch_fixtures.sh

build:
	@# Built exactly as for the tests (dev-dependencies included), so Burn is compiled once.
	cargo test --release --workspace --tests --no-run

test: setup model fixtures test-wasm test-native test-web

test-native: model fixtures
	@# --tests: no doc-test runs, which have nothing to run and would close the output on "0 passed".
	cargo test --release --workspace --tests

# The engine for the browser: crates/web built for size (profile wasm-release, without Burn's CPU
# backend), shrunk by wasm-opt, bound by wasm-bindgen into pkg/.
pkg: setup
	cargo build --profile wasm-release --target $(WASM_TARGET) -p burrow-web
	@# wasm-opt -Oz: 15% fewer bytes for the browser to compile and store (compressed, about as many).
	@# Before wasm-bindgen, not after: Debian's wasm-opt (108) moves the export of wasm-bindgen's
	@# externref table onto the function table (binaryen#4711). It takes the features from rustc's
	@# target_features section, validates what it writes, and drops the name section. Skipped
	@# (30 s) while the engine is unchanged.
	[ $(WASM_OPT) -nt $(WASM) ] || (wasm-opt -Oz $(WASM) -o $(WASM_OPT).tmp && mv $(WASM_OPT).tmp $(WASM_OPT))
	@# Without the producers section (and any name section): only stack traces lose names.
	wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-name burrow_web --out-dir pkg $(WASM_OPT)
	@# The build id web/sw.js imports, a hash of the app shell and the engine: any change to either
	@# makes installed apps offer the update.
	@echo "self.BURROW_BUILD = '$$(cat $(SHELL_FILES) pkg/burrow_web.js pkg/burrow_web_bg.wasm | sha256sum | cut -c1-16)';" > pkg/build.js
	@# Precompressed copies (.br, .gz) that web_serve.mjs sends to browsers accepting them.
	node scripts/web_compress.mjs pkg/burrow_web_bg.wasm pkg/burrow_web.js

test-wasm: pkg

# The browser side (engine, store, service worker, manifest, UI, API) in Debian's headless Chromium.
test-web: setup model pkg build
	npm ci --no-audit --no-fund
	npm test

# The app with the default model on http://127.0.0.1:$(PORT) (BURROW_PORT), until stopped.
serve: setup model pkg
	BURROW_PORT=$(PORT) node scripts/web_serve.mjs . --mount /models/=.cache/models

# Fuzz the GGUF parser (see crates/gguf/fuzz/README.md).
fuzz:
	cd crates/gguf/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run parse -- -max_total_time=$${FUZZ_SECONDS:-300}

# Benchmarks, not tests: Burrow against llama.cpp (native) and wllama (browser) on the default model,
# and the first visit's bytes and the warm start in the browser, written into BENCHMARKS.md.
# Uses target/release/burrow and pkg/ as built (make build pkg).
# Run it on a quiet machine.
.PHONY: bench
bench: setup model
	@[ -d node_modules/@wllama/wllama ] || npm ci --no-audit --no-fund
	scripts/bench/native.sh
	node scripts/bench/browser.mjs
	node scripts/bench/first_visit.mjs
