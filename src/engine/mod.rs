//! The step engine's control block: the cancel token and the row counters an operation updates while it
//! iterates rows and the job runner reads to publish progress (design.md "Execution engine").
//! REST callers pass [`StepControl::NONE`]: nothing is counted and nothing can stop them.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::table::{Cell, RowSource, TableError};

/// Rows between two looks at the cancel token: a stop is noticed within one such batch.
pub const CHECK_EVERY_ROWS: u64 = 2048;

/// `rows_total` when the total is not known.
const UNKNOWN: u64 = u64::MAX;

/// What a step is doing with its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Reading = 0,
    Processing = 1,
    Writing = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Processing,
            2 => Phase::Writing,
            _ => Phase::Reading,
        }
    }
}

/// Why the runner stopped a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `POST …/jobs/{id}/cancel` (or the conversation was deleted).
    Cancelled = 1,
    /// `execution.step_timeout_seconds` elapsed.
    TimedOut = 2,
    /// The server is shutting down.
    Shutdown = 3,
}

/// The error an operation returns when its step was stopped between two batches of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the step was stopped")]
pub struct Cancelled;

impl From<Cancelled> for crate::ops::OpError {
    fn from(_: Cancelled) -> crate::ops::OpError {
        crate::ops::OpError::Table(TableError::Cancelled)
    }
}

impl From<Cancelled> for TableError {
    fn from(_: Cancelled) -> TableError {
        TableError::Cancelled
    }
}

#[derive(Debug)]
struct Shared {
    /// 0 while running, else a [`StopReason`].
    stop: AtomicU8,
    phase: AtomicU8,
    /// Bit i set: phase i is part of this step's plan (for the overall percentage).
    plan: AtomicU8,
    rows_done: AtomicU64,
    rows_total: AtomicU64,
    /// Rows of the step's input once known (what the step's last event reports).
    input_rows: AtomicU64,
}

/// Shared between a running operation (writes counters, reads the token) and the job runner (reads
/// counters, sets the token). Cloning shares the same block.
#[derive(Debug, Clone)]
pub struct StepControl {
    shared: Option<Arc<Shared>>,
}

/// A consistent-enough view of a step's progress (each counter is read once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSnapshot {
    pub phase: Phase,
    pub rows_processed: u64,
    pub rows_total: Option<u64>,
    /// Rows of the step's input, once the reader knows them.
    pub input_rows: Option<u64>,
    /// Share of the step done, 0.0 ..= 1.0, across the planned phases.
    pub fraction: f64,
}

impl StepControl {
    /// No tracking, never stopped (REST endpoints, tests of the operations).
    pub const NONE: StepControl = StepControl { shared: None };

    /// A fresh control for one step: reading phase, nothing counted, all three phases planned.
    pub fn new() -> StepControl {
        StepControl {
            shared: Some(Arc::new(Shared {
                stop: AtomicU8::new(0),
                phase: AtomicU8::new(Phase::Reading as u8),
                plan: AtomicU8::new(0b111),
                rows_done: AtomicU64::new(0),
                rows_total: AtomicU64::new(UNKNOWN),
                input_rows: AtomicU64::new(UNKNOWN),
            })),
        }
    }

    /// Asks the operation to stop at its next check; the first reason wins.
    pub fn stop(&self, reason: StopReason) {
        if let Some(s) = &self.shared {
            let _ = s.stop.compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.shared.as_ref()?.stop.load(Ordering::SeqCst) {
            1 => Some(StopReason::Cancelled),
            2 => Some(StopReason::TimedOut),
            3 => Some(StopReason::Shutdown),
            _ => None,
        }
    }

    /// `Err(Cancelled)` once the step was asked to stop.
    pub fn check(&self) -> Result<(), Cancelled> {
        match &self.shared {
            Some(s) if s.stop.load(Ordering::Relaxed) != 0 => Err(Cancelled),
            _ => Ok(()),
        }
    }

    /// Declares the phases this step goes through (the percentage gives each an equal share).
    pub fn plan(&self, phases: &[Phase]) {
        if let Some(s) = &self.shared {
            let bits = phases.iter().fold(0u8, |acc, p| acc | (1 << *p as u8));
            s.plan.store(bits.max(1), Ordering::Relaxed);
        }
    }

    /// Enters `phase` with `total` rows to go through (`None` when unknown); the counter restarts at 0.
    /// Checks the token, so a stop between phases is noticed at once.
    pub fn begin(&self, phase: Phase, total: Option<u64>) -> Result<(), Cancelled> {
        if let Some(s) = &self.shared {
            s.rows_done.store(0, Ordering::Relaxed);
            s.rows_total.store(total.unwrap_or(UNKNOWN), Ordering::Relaxed);
            s.phase.store(phase as u8, Ordering::Relaxed);
        }
        self.check()
    }

    /// Sets the total of the current phase once it becomes known.
    pub fn set_total(&self, total: u64) {
        if let Some(s) = &self.shared {
            s.rows_total.store(total, Ordering::Relaxed);
        }
    }

    /// Records the size of the step's input (reported by the step's last event).
    pub fn set_input_rows(&self, rows: u64) {
        if let Some(s) = &self.shared {
            s.input_rows.store(rows, Ordering::Relaxed);
        }
    }

    /// `rows` of the current phase are done; looks at the token every [`CHECK_EVERY_ROWS`] rows.
    #[inline]
    pub fn advance_to(&self, rows: u64) -> Result<(), Cancelled> {
        if let Some(s) = &self.shared {
            s.rows_done.store(rows, Ordering::Relaxed);
            if rows.is_multiple_of(CHECK_EVERY_ROWS) {
                return self.check();
            }
        }
        Ok(())
    }

    /// Wraps a row source so each row it hands out is counted (and the token checked).
    pub fn track<S: RowSource>(&self, source: S) -> TrackedRows<'_, S> {
        TrackedRows { control: self, source, rows: 0 }
    }

    pub fn snapshot(&self) -> Option<ProgressSnapshot> {
        let s = self.shared.as_ref()?;
        let phase = Phase::from_u8(s.phase.load(Ordering::Relaxed));
        let rows_processed = s.rows_done.load(Ordering::Relaxed);
        let total = s.rows_total.load(Ordering::Relaxed);
        let input = s.input_rows.load(Ordering::Relaxed);
        let rows_total = (total != UNKNOWN).then_some(total);
        let plan = s.plan.load(Ordering::Relaxed);
        let planned = plan.count_ones().max(1) as f64;
        let before = (plan & ((1u8 << phase as u8) - 1)).count_ones() as f64;
        let within = match rows_total {
            Some(0) => 1.0,
            Some(t) => (rows_processed as f64 / t as f64).min(1.0),
            None => 0.0,
        };
        Some(ProgressSnapshot {
            phase,
            rows_processed,
            rows_total,
            input_rows: (input != UNKNOWN).then_some(input),
            fraction: ((before + within) / planned).clamp(0.0, 1.0),
        })
    }
}

impl Default for StepControl {
    fn default() -> Self {
        StepControl::new()
    }
}

/// A row source that counts the rows it hands out in the current phase.
pub struct TrackedRows<'c, S> {
    control: &'c StepControl,
    source: S,
    rows: u64,
}

impl<S: RowSource> RowSource for TrackedRows<'_, S> {
    fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError> {
        self.control.advance_to(self.rows)?;
        let row = self.source.next_row()?;
        if row.is_some() {
            self.rows += 1;
        }
        Ok(row)
    }
}

impl<S> Drop for TrackedRows<'_, S> {
    fn drop(&mut self) {
        if let Some(s) = &self.control.shared {
            s.rows_done.store(self.rows, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_never_stops_and_reports_nothing() {
        let c = StepControl::NONE;
        c.stop(StopReason::Cancelled);
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.advance_to(CHECK_EVERY_ROWS), Ok(()));
        assert!(c.snapshot().is_none());
    }

    #[test]
    fn a_stop_is_seen_at_the_next_batch_and_the_first_reason_wins() {
        let c = StepControl::new();
        c.stop(StopReason::TimedOut);
        c.stop(StopReason::Cancelled);
        assert_eq!(c.stop_reason(), Some(StopReason::TimedOut));
        assert_eq!(c.advance_to(1), Ok(()), "between two checks nothing is looked at");
        assert_eq!(c.advance_to(CHECK_EVERY_ROWS), Err(Cancelled));
        assert_eq!(c.begin(Phase::Writing, None), Err(Cancelled));
    }

    #[test]
    fn the_fraction_spans_the_planned_phases() {
        let c = StepControl::new();
        c.plan(&[Phase::Reading, Phase::Writing]);
        c.begin(Phase::Reading, Some(100)).unwrap();
        c.advance_to(50).unwrap();
        let s = c.snapshot().unwrap();
        assert_eq!((s.phase, s.rows_processed, s.rows_total), (Phase::Reading, 50, Some(100)));
        assert!((s.fraction - 0.25).abs() < 1e-9);
        c.begin(Phase::Writing, None).unwrap();
        assert!((c.snapshot().unwrap().fraction - 0.5).abs() < 1e-9);
        c.set_total(10);
        c.advance_to(10).unwrap();
        assert!((c.snapshot().unwrap().fraction - 1.0).abs() < 1e-9);
    }

    #[test]
    fn tracked_rows_count_what_they_hand_out() {
        let rows = vec![vec![Cell::text("a")]; 5];
        let c = StepControl::new();
        c.begin(Phase::Writing, Some(5)).unwrap();
        let mut source = c.track(rows.iter());
        let mut n = 0;
        while source.next_row().unwrap().is_some() {
            n += 1;
        }
        drop(source);
        assert_eq!(n, 5);
        assert_eq!(c.snapshot().unwrap().rows_processed, 5);
    }
}
