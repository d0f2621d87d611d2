//! The table model (operations.md §1.1) and its I/O: readers for CSV and workbooks, writers, column types.

pub mod cell;
pub mod error;
pub mod infer;
pub mod names;
pub mod parse;
pub mod read;
pub mod rows;
pub mod spool;
pub mod write;

pub use cell::{Cell, Table};
pub use error::TableError;
pub use rows::RowSource;
