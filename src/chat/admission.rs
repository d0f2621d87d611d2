//! Workflow steps pass the same admission controller as the REST processing endpoints: a step waits for
//! a slot (FIFO with the REST requests) instead of failing, and stops waiting when its job is cancelled.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::admission::{Origin, Permit, Refusal, TaskSpec, MIB};
use crate::chat::Chat;

/// How often a waiting step looks at its job's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(200);

impl Chat {
    /// Waits for a heavy slot for one step of `operation` on `input`: `Ok(Some)` once admitted (run the
    /// step inside `permit.scope(…)`), `Ok(None)` if the job was cancelled while waiting, `Err` with the
    /// step's error when its estimate alone exceeds the memory budget.
    pub(crate) async fn admit_step(
        &self,
        operation: &str,
        input: &Path,
        cancel: &AtomicBool,
    ) -> Result<Option<Permit>, String> {
        let input_bytes = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
        let admit = self.admission.admit(Origin::Chat, TaskSpec::new(operation, input_bytes));
        tokio::pin!(admit);
        let admitted = loop {
            tokio::select! {
                admitted = &mut admit => break admitted,
                _ = tokio::time::sleep(CANCEL_POLL) => {
                    if cancel.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                }
            }
        };
        match admitted {
            Ok(permit) => {
                self.admission.apply_test_hold().await;
                Ok(Some(permit))
            }
            Err(Refusal::OverBudget { estimate_bytes, budget_bytes }) => Err(format!(
                "The input needs an estimated {} MB of memory, more than the processing budget \
                 limits.max_processing_memory_mb ({} MB)",
                estimate_bytes.div_ceil(MIB),
                budget_bytes / MIB
            )),
            Err(other) => Err(format!("Not admitted for processing: {}", other.reason())),
        }
    }
}
