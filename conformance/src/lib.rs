//! Wire-level conformance tests: see `tests/`.
