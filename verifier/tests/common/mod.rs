//! The key helpers (`KeyFolder`: keys and signatures made with the `openssl` command line)
//! live in the test-support crate, which the tests use directly; this re-export remains for
//! `benches/verify.rs`, which includes this file by path.

pub use test_support::openssl::KeyFolder;
