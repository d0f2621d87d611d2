//! The table model (operations.md §1.1) and its I/O: readers for CSV and workbooks, writers, column types.

pub mod cell;
pub mod names;
pub mod parse;

pub use cell::{Cell, Table};
