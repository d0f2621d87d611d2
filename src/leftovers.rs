//! Temporary files a killed process leaves behind (uploads in transit, outputs being written, dumps and
//! snapshots being made): the names they are created under, and the sweep that removes them — all of them
//! at start, when no request of this process can own one, and those older than
//! `file.temp_file_max_age_minutes` periodically while the service runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use actix_web::web;

use crate::config::Config;
use crate::AppState;

/// Upload bodies in transit (`http::upload`), in the upload folder or a conversation folder.
pub const UPLOAD_PREFIX: &str = "upload-";
/// Outputs being written (`table::write`), next to their final name.
pub const PARTIAL_PREFIX: &str = ".partial-";
pub const PARTIAL_SUFFIX: &str = ".tmp";
/// Conversation dumps being written (`chat::archive`).
pub const DUMP_PREFIX: &str = ".dump-";
/// Database snapshots being written (`chat::backup`).
pub const BACKUP_PREFIX: &str = ".backup-";
pub const BACKUP_SUFFIX: &str = ".db";

/// The `(prefix, suffix)` of every temporary name; the temp-file builder puts random characters between.
const PATTERNS: [(&str, &str); 4] = [
    (UPLOAD_PREFIX, ""),
    (PARTIAL_PREFIX, PARTIAL_SUFFIX),
    (DUMP_PREFIX, ""),
    (BACKUP_PREFIX, BACKUP_SUFFIX),
];
/// Random characters between prefix and suffix (the `tempfile` crate's default).
const RANDOM_CHARS: usize = 6;
/// Conversation folders sit under up to 4 partition segments; their files one or two levels deeper.
const MAX_CHAT_DEPTH: usize = 8;

/// True for a name this service gives its temporary files (never a name a client can store: stored names
/// are sanitized, so they never start with `.`, and chat uploads always keep an extension).
pub fn is_temporary_name(name: &str) -> bool {
    PATTERNS.iter().any(|(prefix, suffix)| {
        name.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(suffix)).is_some_and(|random| {
            random.len() == RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    })
}

/// The folders temporary files are created in, each with how deep below it they can sit.
fn roots(config: &Config) -> Vec<(PathBuf, usize)> {
    let cw = &config.chat_workflows;
    vec![
        (config.file.upload_folder.clone(), 0),
        (config.file.output_folder.clone(), 0),
        (cw.storage.workflows_path.clone(), MAX_CHAT_DEPTH),
        (cw.storage.dumps_path.clone(), 0),
        (cw.backup.snapshot_path.clone(), 0),
    ]
}

/// Removes temporary files under the configured folders that were last modified more than `older_than`
/// ago (`None`: all of them). Returns how many were removed; folders that do not exist are skipped.
pub fn sweep(config: &Config, older_than: Option<Duration>) -> usize {
    let now = SystemTime::now();
    let mut removed = 0;
    let mut seen = Vec::new();
    for (root, depth) in roots(config) {
        // The same folder can be configured twice (e.g. uploads and outputs in one place).
        if seen.contains(&root) {
            continue;
        }
        removed += sweep_folder(&root, depth, now, older_than);
        seen.push(root);
    }
    removed
}

fn sweep_folder(dir: &Path, depth: usize, now: SystemTime, older_than: Option<Duration>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        // `file_type` does not follow links: a link is never entered or removed.
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth > 0 {
            removed += sweep_folder(&entry.path(), depth - 1, now, older_than);
            continue;
        }
        if !kind.is_file() || !entry.file_name().to_str().is_some_and(is_temporary_name) {
            continue;
        }
        let old_enough = match older_than {
            None => true,
            Some(age) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|a| a > age)),
        };
        if old_enough {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => log::warn!("leftover sweep: cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
    removed
}

/// The periodic sweep: every `file.temp_sweep_interval_seconds`, files older than
/// `file.temp_file_max_age_minutes`. A file in use is written to (its modification time moves) far more
/// often than that: an upload body must keep the minimum rate, an output is written as it is produced.
pub fn spawn_sweeper(state: web::Data<AppState>) {
    let period = Duration::from_secs(state.config.file.temp_sweep_interval_seconds);
    let max_age = Duration::from_secs(state.config.file.temp_file_max_age_minutes.saturating_mul(60));
    let config = state.config.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            ticker.tick().await;
            let config = config.clone();
            match tokio::task::spawn_blocking(move || sweep(&config, Some(max_age))).await {
                Ok(n) if n > 0 => log::info!("leftover sweep removed {n} abandoned temporary file(s)"),
                Ok(_) => {}
                Err(e) => log::warn!("leftover sweep: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporary_names_match() {
        for name in ["upload-Ab12Cd", ".partial-x1Y2z3.tmp", ".dump-AAAAAA", ".backup-a1b2c3.db"] {
            assert!(is_temporary_name(name), "{name}");
        }
        for name in [
            "upload-Ab12Cd.csv",
            "upload-reports",
            "upload-",
            ".partial-x1Y2z3",
            "partial-x1Y2z3.tmp",
            "sales.csv",
            ".backup-a1b2c3",
            "upload-ab/12c",
        ] {
            assert!(!is_temporary_name(name), "{name}");
        }
    }

    #[test]
    fn sweep_respects_age_depth_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.file.upload_folder = dir.path().join("up");
        config.file.output_folder = dir.path().join("out");
        config.chat_workflows.storage.workflows_path = dir.path().join("wf");
        config.chat_workflows.storage.dumps_path = dir.path().join("dumps");
        config.chat_workflows.backup.snapshot_path = dir.path().join("snap");
        let conv = dir.path().join("wf/ab/cd/chat-1");
        std::fs::create_dir_all(conv.join("outputs")).unwrap();
        std::fs::create_dir_all(&config.file.upload_folder).unwrap();
        std::fs::create_dir_all(config.file.output_folder.join("sub")).unwrap();
        let fresh = config.file.upload_folder.join("upload-Fresh1");
        std::fs::write(&fresh, b"x").unwrap();
        let old = conv.join("outputs/.partial-Old123.tmp");
        std::fs::write(&old, b"x").unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        // Only the output folder itself holds outputs: a deeper look-alike is not ours.
        let nested = config.file.output_folder.join("sub/.partial-Nest12.tmp");
        std::fs::write(&nested, b"x").unwrap();

        assert_eq!(sweep(&config, Some(Duration::from_secs(3600))), 1);
        assert!(!old.exists() && fresh.exists() && nested.exists());
        #[cfg(unix)]
        {
            let target = dir.path().join("upload-Target");
            std::fs::write(&target, b"x").unwrap();
            std::os::unix::fs::symlink(&target, config.file.upload_folder.join("upload-Link12")).unwrap();
        }
        assert_eq!(sweep(&config, None), 1, "at start every temporary file goes, links are left alone");
        assert!(!fresh.exists() && nested.exists());
    }
}
