//! Benchmarks for chatvault; see the bench targets.
