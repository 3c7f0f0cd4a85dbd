"""The wasm32-wasi target\x27s toolchain, contract checks and tools (see docs/wasm.md)."""
