//! What every `tests/fuzz_*.rs` target shares: `make fuzz` raises the number of cases with
//! `PROPTEST_CASES`, and failures found are saved in the crate's `tests/fuzz-regressions/`
//! (commit them: they replay first).

use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

/// `cases` cases (or `PROPTEST_CASES` when `proptest!` reads it), failures kept in `regressions`
/// (a path from the crate's root, e.g. `tests/fuzz-regressions/fuzz_ids.txt`).
pub fn config(cases: u32, regressions: &'static str) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}

/// A runner for ~100 KB inputs, slow in a debug build: `default` cases, or a hundredth of
/// `PROPTEST_CASES` when that is more (`proptest!` would run all of them; a plain runner reads no
/// environment).
pub fn huge_runner(default: u32, regressions: &'static str) -> TestRunner {
    let asked = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse::<u32>().ok()).unwrap_or(0);
    TestRunner::new(Config { cases: default.max(asked / 100), ..config(default, regressions) })
}
