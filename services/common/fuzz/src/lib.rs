//! What every `tests/fuzz_*.rs` target shares: `make fuzz` raises the number of cases with
//! `PROPTEST_CASES`, and failures found are saved in the crate's `tests/fuzz-regressions/`
//! (commit them: they replay first); and the hostile text they feed parsers.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

/// One fuzz target: where its failures are kept (a path from the crate's root, e.g.
/// `tests/fuzz-regressions/fuzz_ids.txt`), so it names the file once:
/// `const TARGET: Target = Target::new("tests/fuzz-regressions/fuzz_ids.txt");`.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    regressions: &'static str,
}

impl Target {
    pub const fn new(regressions: &'static str) -> Self {
        Self { regressions }
    }

    /// See [`config`].
    pub fn config(&self, cases: u32) -> Config {
        config(cases, self.regressions)
    }

    /// See [`huge_runner`].
    pub fn huge_runner(&self, default: u32) -> TestRunner {
        huge_runner(default, self.regressions)
    }
}

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

/// Text of fewer than `max` pieces, each any character, a run matching the regex `word`, or one
/// of `specials` (what the target's parser must refuse or get right), weighted 3 : 3 :
/// `specials_weight`: the hostile input a fuzz target feeds its parsers.
pub fn hostile_text(
    max: usize,
    word: &'static str,
    specials: Vec<&'static str>,
    specials_weight: u32,
) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        3 => word,
        specials_weight => prop::sample::select(specials).prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}
