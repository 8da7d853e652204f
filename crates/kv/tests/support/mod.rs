//! What the integration tests share: the naive model and the request generators. Each test
//! crate uses part of it.
#![allow(dead_code)]

pub mod gen;
pub mod model;
