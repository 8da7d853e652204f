//! The simulator's only source of randomness lives in the test kit, so that the chaos harness
//! and the simulator replay seeds with one generator.

pub use synod_testkit::rng::Rng;
