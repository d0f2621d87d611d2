//! Conversation files (chat-workflows.md §5, §7, §8.10–8.11): partition keys, the per-conversation
//! folder tree, stored-path strings, uploads, safe look-ups for downloads, and URLs.
//!
//! The files live in a [`FileStore`] (`storage.backend`): with `local` they are the folders on disk, as in
//! the single-process service; with `s3` the same tree is kept as keys in the bucket and the local folder is
//! only a working copy (an upload passes through it, a step's inputs are fetched into it and removed after,
//! a step's output is written there, put into the store and removed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use actix_web::HttpRequest;
use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::model::ConversationRow;
use super::ChatError;
use crate::config::{Config, PartitionConfig, PartitionStrategy};
use crate::envelope::{encode_segment, public_origin};
use crate::files::{Area, FileStore, FileStoreError};
use crate::table::names::sanitize_filename;
use crate::table::write::make_durable;

/// The three folders of a conversation, in download look-up order.
pub const FOLDERS: [&str; 3] = ["uploads", "outputs", "intermediate"];

/// Formats `fmt` (strftime) for `at`; `None` for an invalid pattern.
fn strftime(fmt: &str, at: DateTime<Utc>) -> Option<String> {
    let mut out = String::new();
    write!(out, "{}", at.format(fmt)).ok()?;
    Some(out)
}

/// 1–4 relative segments of `[A-Za-z0-9_-]` (or `""` for flat).
pub fn is_valid_partition_key(key: &str) -> bool {
    if key.is_empty() {
        return true;
    }
    let segments: Vec<&str> = key.split('/').collect();
    segments.len() <= 4
        && segments
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

pub struct Storage {
    root: PathBuf,
    /// `workflows_path` as written in the config, `/`-separated, without a trailing `/` (§2.1).
    root_text: String,
    dumps: PathBuf,
    partition: PartitionConfig,
    prefix: String,
    /// Conversation files (keys `{partition_key}/{chat_id}/{folder}/{name}`).
    files: FileStore,
    /// Dump archives (keys `{name}`).
    dump_files: FileStore,
}

/// Where a file to download is: a local file (served in place) or an object of a store.
pub enum Located {
    Path(PathBuf),
    Object { store: FileStore, key: String },
}

impl From<FileStoreError> for ChatError {
    fn from(e: FileStoreError) -> ChatError {
        match e {
            FileStoreError::NotFound => ChatError::NotFound("File not found".into()),
            FileStoreError::Io(io) => ChatError::Io(io),
            other => ChatError::Internal(other.to_string()),
        }
    }
}

/// Local copies of stored files fetched for one step; removed when dropped.
#[derive(Default)]
pub struct Spool(Vec<PathBuf>);

impl Drop for Spool {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Storage {
    /// Validates the partition pattern (a config error at start-up, §5.2) and creates the root folders.
    pub fn new(config: &Config) -> Result<Storage, ChatError> {
        let cw = &config.chat_workflows;
        let storage = Storage {
            root: cw.storage.workflows_path.clone(),
            root_text: cw
                .storage
                .workflows_path
                .to_string_lossy()
                .replace('\\', "/")
                .trim_end_matches('/')
                .to_string(),
            dumps: cw.storage.dumps_path.clone(),
            partition: cw.partition.clone(),
            prefix: config.api.prefix.clone(),
            files: FileStore::for_area(config, Area::Workflows)?,
            dump_files: FileStore::for_area(config, Area::Dumps)?,
        };
        if cw.partition.enabled && cw.partition.strategy == PartitionStrategy::TimeBased {
            let sample = strftime(&cw.partition.subfolder_format, Utc::now());
            if !sample.as_deref().is_some_and(|k| !k.is_empty() && is_valid_partition_key(k)) {
                return Err(ChatError::Internal(format!(
                    "invalid config value at 'chat_workflows.partition.subfolder_format': '{}' must produce 1-4 \
                     segments of [A-Za-z0-9_-]",
                    cw.partition.subfolder_format
                )));
            }
        }
        std::fs::create_dir_all(&storage.root)?;
        std::fs::create_dir_all(&storage.dumps)?;
        Ok(storage)
    }

    pub fn dumps_dir(&self) -> &Path {
        &self.dumps
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The partition key of a new conversation (§5.2).
    pub fn partition_key(&self, chat_id: &str, created: DateTime<Utc>) -> String {
        if !self.partition.enabled {
            return String::new();
        }
        match self.partition.strategy {
            PartitionStrategy::FolderBased => String::new(),
            PartitionStrategy::TimeBased => strftime(&self.partition.subfolder_format, created)
                .unwrap_or_else(|| created.format("%Y/%m").to_string()),
            PartitionStrategy::HashBased => {
                // The reference's literal id prefix; ids shorter than 4 characters use a hash (IMPROVE).
                let source: String = if chat_id.chars().count() >= 4 {
                    chat_id.chars().take(4).collect()
                } else {
                    let digest = Sha256::digest(chat_id.as_bytes());
                    digest.iter().take(2).map(|b| format!("{b:02x}")).collect()
                };
                format!("{}/{}", &source[..2], &source[2..4])
            }
        }
    }

    /// `{workflows_path}/{partition_key}/{chat_id}` on disk.
    pub fn conv_dir_for(&self, partition_key: Option<&str>, chat_id: &str) -> PathBuf {
        let mut dir = self.root.clone();
        if let Some(pk) = partition_key.filter(|k| !k.is_empty()) {
            for segment in pk.split('/') {
                dir.push(segment);
            }
        }
        dir.push(chat_id);
        dir
    }

    pub fn conv_dir(&self, row: &ConversationRow) -> PathBuf {
        self.conv_dir_for(row.partition_key.as_deref(), &row.chat_id)
    }

    /// The conversation folder as stored-path text.
    pub fn conv_dir_text_for(&self, partition_key: Option<&str>, chat_id: &str) -> String {
        match partition_key.filter(|k| !k.is_empty()) {
            Some(pk) => format!("{}/{pk}/{chat_id}", self.root_text),
            None => format!("{}/{chat_id}", self.root_text),
        }
    }

    /// The stored-path string of a file in one of the conversation's folders.
    pub fn stored_path(&self, row: &ConversationRow, folder: &str, name: &str) -> String {
        format!("{}/{folder}/{name}", self.conv_dir_text_for(row.partition_key.as_deref(), &row.chat_id))
    }

    /// The store key of the conversation folder (`{partition_key}/{chat_id}`).
    fn conv_key(&self, row: &ConversationRow) -> String {
        match row.partition_key.as_deref().filter(|k| !k.is_empty()) {
            Some(pk) => format!("{pk}/{}", row.chat_id),
            None => row.chat_id.clone(),
        }
    }

    /// `(folder, name)` of a stored-path string of this conversation. With a file store the path may have
    /// been recorded by another node under its own `workflows_path`: only the conversation's part
    /// (`…/{partition_key}/{chat_id}/{folder}/{name}`) has to match.
    fn stored_parts<'a>(&self, row: &ConversationRow, stored: &'a str) -> Option<(&'a str, &'a str)> {
        let prefix = format!("{}/", self.conv_dir_text_for(row.partition_key.as_deref(), &row.chat_id));
        let rest = match stored.strip_prefix(&prefix) {
            Some(rest) => rest,
            None if !self.is_local() => {
                let conversation = format!("/{}/", self.conv_key(row));
                let at = stored.rfind(&conversation)?;
                &stored[at + conversation.len()..]
            }
            None => return None,
        };
        let (folder, name) = rest.split_once('/')?;
        FOLDERS.contains(&folder).then_some((folder, name))
    }

    /// The store key of a stored-path string of this conversation.
    fn stored_key(&self, row: &ConversationRow, stored: &str) -> Option<String> {
        let (folder, name) = self.stored_parts(row, stored)?;
        (!name.is_empty() && !name.contains('/')).then(|| format!("{}/{folder}/{name}", self.conv_key(row)))
    }

    /// True with the local backend (files are the folders on disk).
    pub fn is_local(&self) -> bool {
        self.files.is_local()
    }

    /// Where a multipart upload is received before [`Storage::place_upload`]: the conversation's folder
    /// (local backend: the final rename stays on one file system), else the shared upload spool.
    pub fn upload_dir(&self, row: &ConversationRow, spool: &Path) -> PathBuf {
        if self.is_local() {
            self.conv_dir(row)
        } else {
            spool.to_path_buf()
        }
    }

    /// Creates the folder tree and writes `metadata.json` once (§5.1). With a store, the local tree is the
    /// working copy and `metadata.json` goes to the store.
    pub fn create_layout(&self, row: &ConversationRow) -> Result<(), ChatError> {
        let dir = self.conv_dir(row);
        for folder in FOLDERS {
            std::fs::create_dir_all(dir.join(folder))?;
        }
        let meta = json!({
            "chat_id": row.chat_id,
            "created_at": row.created_at,
            "partition_key": row.partition_key.clone().unwrap_or_default(),
        });
        let text = serde_json::to_string_pretty(&meta).map_err(|e| ChatError::Internal(e.to_string()))?;
        if !self.is_local() {
            self.files
                .put_bytes_blocking(&format!("{}/metadata.json", self.conv_key(row)), text.into_bytes())?;
            return Ok(());
        }
        match std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join("metadata.json")) {
            Ok(mut f) => std::io::Write::write_all(&mut f, text.as_bytes())?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Removes the conversation folder (always, flat layout included: §5.2 IMPROVE).
    pub fn remove_conversation(&self, row: &ConversationRow) -> Result<(), ChatError> {
        if !self.is_local() {
            self.files.delete_prefix_blocking(&format!("{}/", self.conv_key(row)))?;
        }
        match std::fs::remove_dir_all(self.conv_dir(row)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The file behind a stored-path string of this conversation (`…/{folder}/{name}`), if it is one.
    pub fn resolve_stored(&self, row: &ConversationRow, stored: &str) -> Option<(String, PathBuf)> {
        let (folder, name) = self.stored_parts(row, stored)?;
        let path = crate::table::names::resolve_in_folder(&self.conv_dir(row).join(folder), name)?;
        Some((folder.to_string(), path))
    }

    /// Moves a completed upload into `uploads/{name}` (overwriting, §5.4) and returns its stored path.
    pub fn place_upload(&self, row: &ConversationRow, temp: &Path, name: &str) -> Result<String, ChatError> {
        if !self.is_local() {
            let put = self.files.put_file_blocking(&format!("{}/uploads/{name}", self.conv_key(row)), temp);
            let _ = std::fs::remove_file(temp);
            put?;
            return Ok(self.stored_path(row, "uploads", name));
        }
        let dir = self.conv_dir(row).join("uploads");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::rename(temp, &path)?;
        // The file record is committed next: the content must not be lost after it.
        make_durable(&path)?;
        Ok(self.stored_path(row, "uploads", name))
    }

    /// Download look-up (§8.11): the requested segment is refused (400) when it holds a separator, NUL or
    /// `..`; the sanitized name is searched in the folders in order; only regular files whose canonical path
    /// stays inside the conversation folder are returned.
    pub fn find_download(
        &self,
        row: &ConversationRow,
        requested: &str,
        folder: Option<&str>,
    ) -> Result<(Located, String), ChatError> {
        let name = checked_request_name(requested)?;
        let dir = self.conv_dir(row);
        let folders: Vec<&str> = match folder {
            Some(f) if FOLDERS.contains(&f) => vec![f],
            Some(_) => {
                return Err(ChatError::validation("folder must be one of uploads, outputs, intermediate"))
            }
            None => FOLDERS.to_vec(),
        };
        if !self.is_local() {
            for f in folders {
                let key = format!("{}/{f}/{name}", self.conv_key(row));
                if self.files.head_blocking(&key)?.is_some() {
                    return Ok((Located::Object { store: self.files.clone(), key }, name));
                }
            }
            return Err(ChatError::NotFound("File not found".into()));
        }
        let base = std::fs::canonicalize(&dir).map_err(|_| ChatError::NotFound("File not found".into()))?;
        for f in folders {
            let candidate = dir.join(f).join(&name);
            let Ok(meta) = std::fs::symlink_metadata(&candidate) else { continue };
            if !meta.file_type().is_file() {
                continue;
            }
            match std::fs::canonicalize(&candidate) {
                Ok(real) if real.starts_with(&base) => return Ok((Located::Path(real), name)),
                _ => continue,
            }
        }
        Err(ChatError::NotFound("File not found".into()))
    }

    /// A dump archive in `dumps_path` (§8.10), same rules as [`Storage::find_download`].
    pub fn find_dump(&self, requested: &str) -> Result<(Located, String), ChatError> {
        let name = checked_request_name(requested)?;
        if !self.is_local() {
            return match self.dump_files.head_blocking(&name)? {
                Some(_) => Ok((Located::Object { store: self.dump_files.clone(), key: name.clone() }, name)),
                None => Err(ChatError::NotFound("File not found".into())),
            };
        }
        let candidate = self.dumps.join(&name);
        let not_found = || ChatError::NotFound("File not found".into());
        let meta = std::fs::symlink_metadata(&candidate).map_err(|_| not_found())?;
        if !meta.file_type().is_file() {
            return Err(not_found());
        }
        let base = std::fs::canonicalize(&self.dumps).map_err(|_| not_found())?;
        match std::fs::canonicalize(&candidate) {
            Ok(real) if real.starts_with(&base) => Ok((Located::Path(real), name)),
            _ => Err(not_found()),
        }
    }

    /// `name`, or `name_1`, `name_2`, … when the conversation's `folder` already holds it (in the store
    /// too, with the s3 backend).
    pub fn unique_name(&self, row: &ConversationRow, folder: &str, name: &str) -> String {
        let local = self.conv_dir(row).join(folder);
        if self.is_local() {
            return super::names::unique_in(&local, name);
        }
        let taken = |candidate: &str| {
            local.join(candidate).exists()
                || !matches!(
                    self.files.head_blocking(&format!("{}/{folder}/{candidate}", self.conv_key(row))),
                    Ok(None)
                )
        };
        if !taken(name) {
            return name.to_string();
        }
        let (stem, ext) = super::names::split_ext(name);
        (1..1000)
            .map(|i| format!("{stem}_{i}{ext}"))
            .find(|candidate| !taken(candidate))
            .unwrap_or_else(|| name.to_string())
    }

    /// True when the conversation's `folder` holds `name` (a regular local file, or an object).
    pub fn holds(&self, row: &ConversationRow, folder: &str, name: &str, local: &Path) -> bool {
        if self.is_local() {
            return local.is_file();
        }
        matches!(self.files.head_blocking(&format!("{}/{folder}/{name}", self.conv_key(row))), Ok(Some(_)))
    }

    /// Makes the stored files a step reads available at their local paths: with a store, each one missing
    /// locally is fetched (streamed) into the working copy; the returned spool removes them when dropped.
    pub fn fetch_inputs<'a>(
        &self,
        row: &ConversationRow,
        inputs: impl IntoIterator<Item = (&'a str, &'a Path)>,
    ) -> Result<Spool, ChatError> {
        let mut spool = Spool::default();
        if self.is_local() {
            return Ok(spool);
        }
        // This node's working copy of the conversation (another node may have created it).
        let dir = self.conv_dir(row);
        for folder in FOLDERS {
            std::fs::create_dir_all(dir.join(folder))?;
        }
        for (stored, path) in inputs {
            if path.exists() || spool.0.iter().any(|p| p == path) {
                continue;
            }
            let key =
                self.stored_key(row, stored).ok_or_else(|| ChatError::NotFound("File not found".into()))?;
            self.files.fetch_blocking(&key, path)?;
            spool.0.push(path.to_path_buf());
        }
        Ok(spool)
    }

    /// Puts a step's output, written at `path`, into the store under its stored path and removes the local
    /// copy (nothing to do with the local backend: the file is in place).
    pub fn publish(&self, row: &ConversationRow, stored: &str, path: &Path) -> Result<(), ChatError> {
        if self.is_local() {
            return Ok(());
        }
        let key = self
            .stored_key(row, stored)
            .ok_or_else(|| ChatError::Internal(format!("not a stored path: {stored}")))?;
        // A conversation deleted during the run (on any node) gets no file back.
        if self.files.head_blocking(&format!("{}/metadata.json", self.conv_key(row)))?.is_none() {
            let _ = std::fs::remove_file(path);
            return Err(ChatError::NotFound("the conversation folder no longer exists".into()));
        }
        let put = self.files.put_file_blocking(&key, path);
        let _ = std::fs::remove_file(path);
        Ok(put?)
    }

    /// Removes a file of the conversation by its stored path (local file and, with a store, the object).
    pub fn remove_stored(&self, row: &ConversationRow, stored: &str) {
        if let Some((_, path)) = self.resolve_stored(row, stored) {
            let _ = std::fs::remove_file(path);
        }
        if !self.is_local() {
            if let Some(key) = self.stored_key(row, stored) {
                if let Err(e) = self.files.delete_blocking(&key) {
                    log::warn!("cannot delete {key} from the file store: {e}");
                }
            }
        }
    }

    /// A local copy of the conversation's files for a dump: the folder itself with the local backend, else
    /// a temporary folder under the working root filled from the store (removed when dropped).
    pub fn conversation_copy(&self, row: &ConversationRow) -> Result<ConversationCopy, ChatError> {
        if self.is_local() {
            return Ok(ConversationCopy { dir: self.conv_dir(row), _temp: None });
        }
        let temp = tempfile::Builder::new().prefix(".dump-src-").tempdir_in(&self.root)?;
        let prefix = format!("{}/", self.conv_key(row));
        for object in self.files.list_blocking(&prefix)? {
            let key = object.location.to_string();
            let Some(rel) = key.strip_prefix(&prefix) else { continue };
            let target = rel.split('/').fold(temp.path().to_path_buf(), |p, s| p.join(s));
            self.files.fetch_blocking(&key, &target)?;
        }
        Ok(ConversationCopy { dir: temp.path().to_path_buf(), _temp: Some(temp) })
    }

    /// True when a dump named `name` exists (locally, or in the store).
    pub fn dump_exists(&self, name: &str) -> bool {
        self.dumps.join(name).exists()
            || (!self.is_local() && !matches!(self.dump_files.head_blocking(name), Ok(None)))
    }

    /// Puts a dump written to `dumps_path/{name}` into the store and removes the local file (nothing to do
    /// with the local backend).
    pub fn publish_dump(&self, name: &str) -> Result<(), ChatError> {
        if self.is_local() {
            return Ok(());
        }
        let path = self.dumps.join(name);
        let put = self.dump_files.put_file_blocking(name, &path);
        let _ = std::fs::remove_file(&path);
        Ok(put?)
    }

    /// Puts the files of a restored conversation, unpacked in `staging` (the folder layout), into the store
    /// under the conversation `row`. Returns the keys written (to undo).
    pub fn publish_tree(&self, row: &ConversationRow, staging: &Path) -> Result<Vec<String>, ChatError> {
        let mut written = Vec::new();
        let prefix = self.conv_key(row);
        let mut pending = vec![(staging.to_path_buf(), String::new())];
        while let Some((dir, rel)) = pending.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let kind = entry.file_type()?;
                let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                if kind.is_dir() {
                    pending.push((entry.path(), rel));
                } else if kind.is_file() {
                    let key = format!("{prefix}/{rel}");
                    self.files.put_file_blocking(&key, &entry.path())?;
                    written.push(key);
                }
            }
        }
        Ok(written)
    }

    /// Removes the objects of a conversation (the store side of [`Storage::remove_conversation`]).
    pub fn remove_objects(&self, row: &ConversationRow) -> Result<(), ChatError> {
        if !self.is_local() {
            self.files.delete_prefix_blocking(&format!("{}/", self.conv_key(row)))?;
        }
        Ok(())
    }

    /// Removes the given objects (undo of [`Storage::publish_tree`]).
    pub fn remove_keys(&self, keys: &[String]) {
        for key in keys {
            let _ = self.files.delete_blocking(key);
        }
    }

    /// `{base}{prefix}/chat/workflows/{chat_id}/files/{name}` (§7).
    pub fn file_url(&self, base: &str, chat_id: &str, stored_path: &str) -> String {
        let name = stored_path.rsplit('/').next().unwrap_or(stored_path);
        format!(
            "{base}{}/chat/workflows/{}/files/{}",
            self.prefix,
            encode_segment(chat_id),
            encode_segment(name)
        )
    }

    /// `{base}{prefix}/chat/downloads/{dump}` (§7).
    pub fn dump_url(&self, base: &str, dump_file: &str) -> String {
        format!("{base}{}/chat/downloads/{}", self.prefix, encode_segment(dump_file))
    }
}

/// A conversation's files on local disk for as long as this lives (see [`Storage::conversation_copy`]).
pub struct ConversationCopy {
    pub dir: PathBuf,
    /// Held only to remove the fetched copy when dropped.
    _temp: Option<tempfile::TempDir>,
}

/// The origin for URLs built from this request (§7 rules, shared with the rest of the API).
pub fn request_base(req: &HttpRequest, config: &Config) -> String {
    public_origin(req, config)
}

/// Decodes and checks a requested file name; returns the sanitized name.
fn checked_request_name(requested: &str) -> Result<String, ChatError> {
    let decoded = percent_decode_str(requested).decode_utf8_lossy().to_string();
    let invalid = decoded.contains(['/', '\\', '\0']) || decoded == ".." || decoded.is_empty();
    if invalid {
        return Err(ChatError::BadRequest("Invalid file path".into()));
    }
    let name = sanitize_filename(&decoded);
    if name.is_empty() {
        return Err(ChatError::NotFound("File not found".into()));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn storage(strategy: PartitionStrategy, format: &str, enabled: bool, root: &Path) -> Storage {
        let mut c = Config::default();
        c.chat_workflows.storage.workflows_path = root.join("wf");
        c.chat_workflows.storage.dumps_path = root.join("dumps");
        c.chat_workflows.partition = PartitionConfig { enabled, strategy, subfolder_format: format.into() };
        Storage::new(&c).unwrap()
    }

    #[test]
    fn partition_strategies() {
        let dir = tempfile::tempdir().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 2, 10, 33).unwrap();
        let id = "4c1e9a0b-1d2e-4f3a-9b8c-7d6e5f4a3b2c";
        assert_eq!(
            storage(PartitionStrategy::TimeBased, "%Y/%m", true, dir.path()).partition_key(id, at),
            "2026/03"
        );
        assert_eq!(
            storage(PartitionStrategy::TimeBased, "%Y/%m/%d", true, dir.path()).partition_key(id, at),
            "2026/03/01"
        );
        assert_eq!(
            storage(PartitionStrategy::HashBased, "%Y/%m", true, dir.path()).partition_key(id, at),
            "4c/1e"
        );
        let short = storage(PartitionStrategy::HashBased, "%Y/%m", true, dir.path()).partition_key("ab", at);
        assert!(is_valid_partition_key(&short) && short.len() == 5, "{short}");
        assert_eq!(
            storage(PartitionStrategy::FolderBased, "%Y/%m", true, dir.path()).partition_key(id, at),
            ""
        );
        assert_eq!(
            storage(PartitionStrategy::TimeBased, "%Y/%m", false, dir.path()).partition_key(id, at),
            ""
        );
    }

    #[test]
    fn bad_subfolder_formats_fail_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.chat_workflows.storage.workflows_path = dir.path().join("wf");
        c.chat_workflows.storage.dumps_path = dir.path().join("d");
        for bad in ["%Y %m", "%Y/../%m", "%Q", "%Y/%m/%d/%H/%M"] {
            c.chat_workflows.partition.subfolder_format = bad.into();
            assert!(Storage::new(&c).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_names_are_checked() {
        assert!(matches!(checked_request_name("..%2F..%2Fmetadata.json"), Err(ChatError::BadRequest(_))));
        assert!(matches!(checked_request_name("a%5Cb"), Err(ChatError::BadRequest(_))));
        assert_eq!(checked_request_name("my%20report.xlsx").unwrap(), "my_report.xlsx");
    }
}
