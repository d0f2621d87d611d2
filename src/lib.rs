//! oxcelize (skeleton).

pub mod ops;
pub mod table;
