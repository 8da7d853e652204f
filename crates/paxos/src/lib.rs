//! Synod engine.
