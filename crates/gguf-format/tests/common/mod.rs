//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The SmolLM2 Q4_1 fixture (panics with the fetch command when missing).
pub fn fixture() -> PathBuf {
    test_fixtures::fixture(test_fixtures::SMOLLM2)
}
