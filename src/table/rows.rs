//! Row sources: the rows of a table handed out one at a time, so a generator streams the same way from a
//! table in memory and from a sheet spooled to disk (`table::spool`).

use super::{Cell, TableError};

/// Rows one at a time; a row stays valid until the next call, so a source may reuse one buffer.
pub trait RowSource {
    /// The next row, or `None` after the last one.
    fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError>;
}

/// A borrowed source is a source (so drivers can wrap `&mut dyn RowSource`).
impl<S: RowSource + ?Sized> RowSource for &mut S {
    fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError> {
        (**self).next_row()
    }
}

/// The rows of a table in memory (`&mut table.rows.iter()`) never fail.
impl RowSource for std::slice::Iter<'_, Vec<Cell>> {
    fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError> {
        Ok(self.next().map(Vec::as_slice))
    }
}

/// Sets `slot` to `text`, reusing its allocation when it already holds text.
pub(crate) fn set_text(slot: &mut Cell, text: &str) {
    match slot {
        Cell::Text(s) => {
            s.clear();
            s.push_str(text);
        }
        other => *other = Cell::Text(text.to_string()),
    }
}

/// Copies `source` into `slot`, reusing the slot's allocation for text.
pub(crate) fn assign(slot: &mut Cell, source: &Cell) {
    match (slot, source) {
        (Cell::Text(s), Cell::Text(t)) => s.clone_from(t),
        (slot, source) => *slot = source.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_memory_are_a_source() {
        let rows = [vec![Cell::text("a")], vec![Cell::Missing]];
        let mut source = rows.iter();
        assert_eq!(source.next_row().unwrap(), Some(&[Cell::text("a")][..]));
        assert_eq!(source.next_row().unwrap(), Some(&[Cell::Missing][..]));
        assert_eq!(source.next_row().unwrap(), None);
    }

    #[test]
    fn slots_are_overwritten_in_place() {
        let mut slot = Cell::text(String::with_capacity(64));
        set_text(&mut slot, "abc");
        assert!(matches!(&slot, Cell::Text(s) if s == "abc" && s.capacity() >= 64));
        assign(&mut slot, &Cell::Int(3));
        assert_eq!(slot, Cell::Int(3));
        assign(&mut slot, &Cell::text("x"));
        assert_eq!(slot, Cell::text("x"));
        set_text(&mut slot, "");
        assert_eq!(slot, Cell::text(""));
    }
}
