//! oxcelize (skeleton).

pub mod table;
