//! Synod storage (in progress).
