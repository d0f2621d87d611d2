//! SQLite snapshots (chat-workflows.md §11): the online backup API into a temporary file renamed into
//! `snapshot_path`, retention by the time stamp in the name (the newest snapshot is never deleted), and the
//! schedule.

use std::path::Path;
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use serde_json::{json, Value};

use super::{Chat, ChatError};

const PREFIX: &str = "chat_backup_";

/// The time stamp in `chat_backup_{YYYYmmdd_HHMMSS}[_n].db`.
fn snapshot_time(name: &str) -> Option<NaiveDateTime> {
    let stem = name.strip_prefix(PREFIX)?.strip_suffix(".db")?;
    NaiveDateTime::parse_from_str(stem.get(..15)?, "%Y%m%d_%H%M%S").ok()
}

/// Deletes snapshots older than `retention_days`, never `keep`; returns the deleted names.
fn apply_retention(dir: &Path, retention_days: u64, keep: &str) -> Result<Vec<String>, ChatError> {
    let cutoff = Utc::now().naive_utc() - chrono::Duration::days(retention_days as i64);
    let mut deleted = Vec::new();
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == keep || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if snapshot_time(&name).is_some_and(|t| t < cutoff) && std::fs::remove_file(entry.path()).is_ok() {
            deleted.push(name);
        }
    }
    deleted.sort();
    Ok(deleted)
}

impl Chat {
    /// Takes a consistent snapshot now (§8.9) and applies retention.
    pub fn backup_now(&self) -> Result<Value, ChatError> {
        let backup = &self.config.chat_workflows.backup;
        let dir = &backup.snapshot_path;
        std::fs::create_dir_all(dir)?;
        let stamp = Utc::now().format("%Y%m%d_%H%M%S");
        let name = (0..)
            .map(|i| if i == 0 { format!("{PREFIX}{stamp}.db") } else { format!("{PREFIX}{stamp}_{i}.db") })
            .find(|n| !dir.join(n).exists())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(crate::leftovers::BACKUP_PREFIX)
            .suffix(crate::leftovers::BACKUP_SUFFIX)
            .tempfile_in(dir)?;
        self.store.backup_to(temp.path())?;
        let size = std::fs::metadata(temp.path())?.len();
        temp.persist(dir.join(&name)).map_err(|e| ChatError::Io(e.error))?;
        let deleted = apply_retention(dir, backup.retention_days, &name)?;
        let shown = format!("{}/{name}", dir.to_string_lossy().replace('\\', "/").trim_end_matches('/'));
        Ok(json!({"backup_file": name, "path": shown, "size_bytes": size, "deleted_snapshots": deleted}))
    }

    /// Scheduled snapshots: every `backup.interval_minutes`, the first one interval after start.
    pub fn spawn_backups(self: &std::sync::Arc<Self>) {
        let backup = &self.config.chat_workflows.backup;
        if !backup.enabled || backup.interval_minutes == 0 {
            return;
        }
        let chat = self.clone();
        super::spawn_periodic(
            "scheduled backup",
            Duration::from_secs(backup.interval_minutes * 60),
            move || {
                let v = chat.backup_now()?;
                log::info!("scheduled backup written: {}", v["backup_file"]);
                Ok(())
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_uses_the_name_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "chat_backup_20200101_000000.db",
            "chat_backup_20200102_000000_1.db",
            "other.db",
            "chat_backup_x.db",
        ] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let fresh = format!("chat_backup_{}.db", Utc::now().format("%Y%m%d_%H%M%S"));
        std::fs::write(dir.path().join(&fresh), b"x").unwrap();
        let deleted = apply_retention(dir.path(), 30, &fresh).unwrap();
        assert_eq!(deleted, vec!["chat_backup_20200101_000000.db", "chat_backup_20200102_000000_1.db"]);
        assert!(dir.path().join(&fresh).exists() && dir.path().join("other.db").exists());
        // The newest is never deleted, however old its name says it is.
        assert!(apply_retention(dir.path(), 0, "chat_backup_x.db").unwrap().len() <= 1);
    }
}
