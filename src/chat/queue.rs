//! Cluster mode's job queue: jobs are rows in PostgreSQL that any node may claim. A claim gives the node a
//! lease (`lease_owner`, `lease_until`, `attempt`) which it renews while the job runs; every write and event
//! of the run happens while the node holds the job's row locked after checking owner and attempt (a
//! [`JobFence`]), so a node that lost its lease can no longer record anything. A job whose lease expired is
//! claimed again by any node and resumes at its first unfinished step. The runner side lives in `jobs.rs`.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde_json::Value;

use super::model::{Job, WorkflowStep};
use super::ChatError;

/// A job this node has just claimed.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job: Job,
    /// The resolved workflow request the job was submitted with (`{input_file, steps}`).
    pub request: Option<Value>,
    /// This claim's number (1 = first run); the fence of every write checks it.
    pub attempt: i64,
    /// The job was running under an expired lease: another node died (or stopped) while running it.
    pub takeover: bool,
    /// A taken-over job that already used `cluster.max_job_attempts`: it is to be failed, not run.
    pub exhausted: bool,
    /// The steps completed so far (see `JobProgress`), written with each completed step.
    pub progress: Option<Value>,
}

/// How long a finished job holds its chat when its node dies before [`JobQueue::free_chat`].
pub const FINISHED_HOLD: Duration = Duration::from_secs(10);

/// What the queue tells the workers of this node (from PostgreSQL `LISTEN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSignal {
    /// A job may have become claimable (submitted, a chat's job finished, a lease released).
    Work,
    /// A cancel was requested for this job.
    Cancel(String),
    /// This job reached its end (on some node).
    Finished(String),
}

/// The job queue of cluster mode (implemented by the PostgreSQL store). Every method blocks.
pub trait JobQueue: Send + Sync {
    /// Records a pending job, its steps and its resolved request, and wakes the workers of every node.
    /// Returns how many unfinished jobs of the same chat are ahead of it.
    fn enqueue(&self, job: &Job, steps: &[WorkflowStep], request: &Value) -> Result<usize, ChatError>;
    /// Claims at most `limit` jobs in one transaction (`FOR UPDATE SKIP LOCKED`): a pending job that is the
    /// oldest unfinished one of its chat (so a chat never has two jobs running, whichever nodes claim), a
    /// pending job with a cancel request (to be cancelled at once), or a running job whose lease expired.
    fn claim(&self, lease: Duration, max_attempts: u32, limit: usize) -> Result<Vec<ClaimedJob>, ChatError>;
    /// Extends this node's lease; `None` when the lease is no longer this node's (owner or attempt
    /// changed, job finished or deleted), else whether a cancel was requested.
    fn renew(&self, job_id: &str, attempt: i64, lease: Duration) -> Result<Option<bool>, ChatError>;
    /// Locks the job's row after checking that this node holds the lease of `attempt`; `None` when not.
    fn fence(&self, job_id: &str, attempt: i64) -> Result<Option<Box<dyn JobFence>>, ChatError>;
    /// Records a cancel request and tells every node.
    fn request_cancel(&self, job_id: &str) -> Result<(), ChatError>;
    /// Gives up leases of this node so that any node takes the jobs over at once: the given
    /// `(job_id, attempt)`s, or every lease recorded under this node's id (a restart) when `None`.
    fn release(&self, leases: Option<&[(String, i64)]>) -> Result<usize, ChatError>;
    /// The end of the job (recorded by [`JobFence::finish_job`]) has been published: its chat's next job
    /// may start now. Until then the finished job keeps holding its chat, so that job's events never
    /// come before this one's last (for at most [`FINISHED_HOLD`] if this node dies in between).
    fn free_chat(&self, job_id: &str, attempt: i64) -> Result<(), ChatError>;
    /// Among `job_ids` (running here), the ones with a cancel request.
    fn cancel_requested(&self, job_ids: &[String]) -> Result<Vec<String>, ChatError>;
    /// Starts delivering [`QueueSignal`]s to `signals` (reconnecting by itself) until it is closed.
    fn listen(&self, signals: tokio::sync::mpsc::Sender<QueueSignal>);
    /// This node's id (the lease owner).
    fn node_id(&self) -> &str;
}

/// The job's row, locked for one batch of writes by the lease holder. Dropping it without `commit`
/// rolls the writes back.
pub trait JobFence: Send {
    fn update_step(&mut self, step: &WorkflowStep) -> Result<(), ChatError>;
    /// Stores the steps completed so far (`JobProgress` as JSON).
    fn save_progress(&mut self, progress: &Value) -> Result<(), ChatError>;
    /// Writes the terminal state; the job goes on holding its chat until [`JobQueue::free_chat`].
    fn finish_job(
        &mut self,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), ChatError>;
    fn commit(self: Box<Self>) -> Result<(), ChatError>;
}

/// Per-node counters of the queue, exposed on `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Jobs this node claimed (first runs and takeovers).
    pub claimed: Counter,
    /// Jobs this node took over from a node whose lease had expired.
    pub takeovers: Counter,
    /// Lease renewals that failed (database unreachable, or the lease was lost).
    pub renewals_failed: Counter,
}

impl QueueStats {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "cluster_jobs_claimed",
            "Jobs this node claimed from the queue",
            self.claimed.clone(),
        );
        registry.register(
            "cluster_lease_takeovers",
            "Jobs this node took over after their node's lease expired",
            self.takeovers.clone(),
        );
        registry.register(
            "cluster_lease_renewals_failed",
            "Lease renewals of this node that failed (database unreachable or lease lost)",
            self.renewals_failed.clone(),
        );
    }
}
