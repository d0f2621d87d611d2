//! Dump and restore (chat-workflows.md §10): gzip tar archives of one conversation, and the one safe
//! unpacker that validates every member (paths, types, sizes, counts) before anything is written, then
//! extracts only validated regular files into a staging folder.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::model::{format_ts, new_uuid, normalize_ts, parse_ts, Conversation, ConversationRow};
use super::storage::{is_valid_partition_key, FOLDERS};
use super::{Chat, ChatError};
use crate::events::is_valid_chat_id;

/// Files that exist only inside archives, never in a live conversation folder (§10.1 IMPROVE).
const ARCHIVE_ONLY: [&str; 4] =
    ["conversation_metadata.json", "events.jsonl", "bot_context.json", "dump_manifest.json"];
/// Largest metadata member read into memory.
const MAX_METADATA_BYTES: u64 = 64 * 1024 * 1024;

fn invalid(reason: impl std::fmt::Display) -> ChatError {
    ChatError::validation(format!("Invalid dump archive: {reason}"))
}

/// One validated archive member.
#[derive(Debug, Clone)]
struct Member {
    /// Components after the top-level directory (empty for the directory itself).
    rel: Vec<String>,
    is_dir: bool,
    size: u64,
    sha256: String,
}

/// An archive whose every member passed the §10.3 checks.
pub struct SafeArchive {
    path: PathBuf,
    pub top: String,
    members: Vec<Member>,
    /// Contents of the small metadata members, by relative path.
    docs: HashMap<String, Vec<u8>>,
}

/// Bounds of one restore.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_members: u64,
    pub max_total_bytes: u64,
}

/// A reader that fails once more than `left` bytes were read (decompression bomb guard).
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other("archive exceeds the size limit"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn open_tar(
    path: &Path,
    limits: &Limits,
) -> Result<tar::Archive<Capped<GzDecoder<BufReader<File>>>>, ChatError> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_err() || magic != [0x1f, 0x8b] {
        return Err(invalid("not a gzip tar file"));
    }
    let file = File::open(path)?;
    // Tar headers and padding add at most a few KiB per member on top of the content.
    let cap = limits
        .max_total_bytes
        .saturating_add(limits.max_members.saturating_mul(8 * 1024))
        .saturating_add(1 << 20);
    Ok(tar::Archive::new(Capped { inner: GzDecoder::new(BufReader::new(file)), left: cap }))
}

/// Splits and checks a member path: relative, no `..`, `.`, empty components, NUL, backslash or drive.
fn checked_components(raw: &[u8]) -> Result<Vec<String>, ChatError> {
    let text = std::str::from_utf8(raw).map_err(|_| invalid("member name is not UTF-8"))?;
    if text.starts_with('/') || text.contains('\0') || text.contains('\\') {
        return Err(invalid(format!("unsafe member path: {text}")));
    }
    let trimmed = text.strip_suffix('/').unwrap_or(text);
    let parts: Vec<String> = trimmed.split('/').map(str::to_string).collect();
    for (i, p) in parts.iter().enumerate() {
        let drive = i == 0 && p.len() >= 2 && p.as_bytes()[1] == b':';
        if p.is_empty() || p == "." || p == ".." || drive {
            return Err(invalid(format!("unsafe member path: {text}")));
        }
    }
    Ok(parts)
}

fn map_read_error(e: std::io::Error) -> ChatError {
    if e.to_string().contains("size limit") {
        invalid("archive exceeds the size limit")
    } else {
        invalid("not a gzip tar file")
    }
}

impl SafeArchive {
    /// Reads the whole archive once, validating every member; nothing is written.
    pub fn open(path: &Path, limits: Limits) -> Result<SafeArchive, ChatError> {
        let mut archive = open_tar(path, &limits)?;
        let mut members = Vec::new();
        let mut docs = HashMap::new();
        let mut top: Option<String> = None;
        let mut total: u64 = 0;
        for entry in archive.entries().map_err(map_read_error)? {
            let mut entry = entry.map_err(map_read_error)?;
            if members.len() as u64 >= limits.max_members {
                return Err(invalid(format!("too many members (max {})", limits.max_members)));
            }
            let kind = entry.header().entry_type();
            let is_dir = kind.is_dir();
            if !(is_dir || kind.is_file()) {
                return Err(invalid(
                    "only regular files and directories are allowed (links and devices are refused)",
                ));
            }
            let parts = checked_components(&entry.path_bytes())?;
            match &top {
                None => {
                    if !is_valid_chat_id(&parts[0]) {
                        return Err(invalid(format!(
                            "top-level directory is not a valid chat id: {}",
                            parts[0]
                        )));
                    }
                    top = Some(parts[0].clone());
                }
                Some(t) if *t != parts[0] => return Err(invalid("more than one top-level directory")),
                Some(_) => {}
            }
            let size = if is_dir { 0 } else { entry.header().size().map_err(map_read_error)? };
            total = total.saturating_add(size);
            if size > limits.max_total_bytes || total > limits.max_total_bytes {
                return Err(invalid(format!(
                    "uncompressed size exceeds the limit of {} MB",
                    limits.max_total_bytes / (1024 * 1024)
                )));
            }
            let rel: Vec<String> = parts[1..].to_vec();
            if !is_dir && rel.is_empty() {
                return Err(invalid("the top-level member must be a directory"));
            }
            let mut hasher = Sha256::new();
            let keep = !is_dir && rel.len() == 1 && size <= MAX_METADATA_BYTES;
            let mut doc = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = entry.read(&mut buf).map_err(map_read_error)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                if keep {
                    doc.extend_from_slice(&buf[..n]);
                }
            }
            if keep {
                docs.insert(rel[0].clone(), doc);
            }
            let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
            members.push(Member { rel, is_dir, size, sha256 });
        }
        let top = top.ok_or_else(|| invalid("the archive is empty"))?;
        Ok(SafeArchive { path: path.to_path_buf(), top, members, docs })
    }

    pub fn doc(&self, name: &str) -> Option<&[u8]> {
        self.docs.get(name).map(Vec::as_slice)
    }

    /// Verifies the manifest checksums, if a manifest is present.
    pub fn verify_manifest(&self) -> Result<(), ChatError> {
        let Some(raw) = self.doc("dump_manifest.json") else { return Ok(()) };
        let manifest: Value =
            serde_json::from_slice(raw).map_err(|_| invalid("dump_manifest.json is not JSON"))?;
        let Some(files) = manifest.get("files").and_then(Value::as_array) else { return Ok(()) };
        for f in files {
            let (Some(path), Some(sha)) =
                (f.get("path").and_then(Value::as_str), f.get("sha256").and_then(Value::as_str))
            else {
                continue;
            };
            let rel = path.strip_prefix(&format!("{}/", self.top)).unwrap_or(path);
            let member = self.members.iter().find(|m| !m.is_dir && m.rel.join("/") == rel);
            match member {
                Some(m) if m.sha256 == sha => {}
                Some(_) => return Err(invalid(format!("checksum mismatch for {path}"))),
                None => return Err(invalid(format!("file listed in the manifest is missing: {path}"))),
            }
        }
        Ok(())
    }

    /// Writes the validated regular files under `{top}/{uploads|outputs|intermediate}/…` into `dest`,
    /// re-checking that the archive still matches what was validated. Creates only new files.
    pub fn unpack_conversation_files(&self, dest: &Path, limits: Limits) -> Result<(), ChatError> {
        let mut archive = open_tar(&self.path, &limits)?;
        for (index, entry) in archive.entries().map_err(map_read_error)?.enumerate() {
            let mut entry = entry.map_err(map_read_error)?;
            let expected =
                self.members.get(index).ok_or_else(|| invalid("archive changed during restore"))?;
            let parts = checked_components(&entry.path_bytes())?;
            if parts[1..] != expected.rel[..] || entry.header().entry_type().is_dir() != expected.is_dir {
                return Err(invalid("archive changed during restore"));
            }
            let wanted = expected.rel.len() >= 2 && FOLDERS.contains(&expected.rel[0].as_str());
            if expected.is_dir || !wanted {
                continue;
            }
            let mut target = dest.to_path_buf();
            for c in &expected.rel[..expected.rel.len() - 1] {
                target.push(c);
            }
            std::fs::create_dir_all(&target)?;
            target.push(&expected.rel[expected.rel.len() - 1]);
            let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&target)?;
            let copied =
                std::io::copy(&mut (&mut entry).take(expected.size), &mut out).map_err(map_read_error)?;
            if copied != expected.size {
                return Err(invalid("truncated member"));
            }
            // The restored conversation is recorded in SQLite next: its files' content is made durable first.
            out.sync_all()?;
        }
        Ok(())
    }
}

/// Rewrites a stored path of conversation `old` to live under `new_dir` (§10.3 step 7).
fn rewrite_path(text: &str, old: &str, new_dir: &str) -> Option<String> {
    let marker = format!("{old}/");
    let start = if text.starts_with(&marker) { 0 } else { text.rfind(&format!("/{marker}"))? + 1 };
    let rest = &text[start + marker.len()..];
    let folder = rest.split('/').next()?;
    FOLDERS.contains(&folder).then(|| format!("{new_dir}/{rest}"))
}

fn rewrite_value(v: &mut Value, old: &str, new_dir: &str) {
    match v {
        Value::String(s) => {
            if let Some(n) = rewrite_path(s, old, new_dir) {
                *s = n;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_value(i, old, new_dir)),
        Value::Object(m) => m.values_mut().for_each(|i| rewrite_value(i, old, new_dir)),
        _ => {}
    }
}

fn tar_header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_entry_type(if dir { tar::EntryType::Directory } else { tar::EntryType::Regular });
    h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    h
}

impl Chat {
    fn restore_limits(&self) -> Limits {
        let d = &self.config.chat_workflows.dump;
        Limits {
            max_members: d.max_restore_members.max(1),
            max_total_bytes: d.max_restore_size_mb.saturating_mul(1024 * 1024),
        }
    }

    /// Dumps a conversation into `dumps_path` (§10.2); returns the archive's file name.
    pub fn dump_conversation(&self, chat_id: &str) -> Result<String, ChatError> {
        let row = self.require_row(chat_id)?;
        let conv = self
            .store
            .conversation(chat_id)?
            .ok_or_else(|| ChatError::NotFound("Conversation not found".into()))?;
        let dump = &self.config.chat_workflows.dump;
        if !dump.compression.eq_ignore_ascii_case("gzip") {
            log::warn!("dump.compression '{}' is not supported; using gzip", dump.compression);
        }
        let dir = self.storage.dumps_dir();
        std::fs::create_dir_all(dir)?;
        let stamp = chrono::Utc::now().format("%Y%m%d_%H%M%S");
        let name = (0..)
            .map(|i| {
                if i == 0 {
                    format!("{chat_id}_{stamp}.tar.gz")
                } else {
                    format!("{chat_id}_{stamp}_{i}.tar.gz")
                }
            })
            .find(|n| !self.storage.dump_exists(n))
            .unwrap_or_default();
        let temp = tempfile::Builder::new().prefix(crate::leftovers::DUMP_PREFIX).tempfile_in(dir)?;
        {
            let gz = GzEncoder::new(BufWriter::new(temp.as_file()), Compression::default());
            let mut tar = tar::Builder::new(gz);
            let mut manifest = Vec::new();
            tar.append_data(&mut tar_header(0, true), format!("{chat_id}/"), std::io::empty())?;
            // With a file store the conversation's files are fetched to a temporary copy first.
            let copy = self.storage.conversation_copy(&row)?;
            let conv_dir = copy.dir.clone();
            let mut files: Vec<(String, PathBuf)> = Vec::new();
            if conv_dir.join("metadata.json").is_file() {
                files.push(("metadata.json".into(), conv_dir.join("metadata.json")));
            }
            for folder in FOLDERS {
                collect_files(&conv_dir.join(folder), folder, &mut files)?;
            }
            for (rel, path) in files {
                let mut f = File::open(&path)?;
                let size = f.metadata()?.len();
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                let sha: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
                let member = format!("{chat_id}/{rel}");
                tar.append_data(&mut tar_header(size, false), &member, File::open(&path)?.take(size))?;
                manifest.push(json!({"path": member, "size": size, "sha256": sha}));
            }
            let mut add_doc =
                |tar: &mut tar::Builder<_>, name: &str, bytes: Vec<u8>| -> Result<(), ChatError> {
                    let member = format!("{chat_id}/{name}");
                    let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
                    manifest.push(json!({"path": member, "size": bytes.len(), "sha256": sha}));
                    tar.append_data(&mut tar_header(bytes.len() as u64, false), &member, bytes.as_slice())?;
                    Ok(())
                };
            if dump.include_metadata {
                let text =
                    serde_json::to_vec_pretty(&conv).map_err(|e| ChatError::Internal(e.to_string()))?;
                add_doc(&mut tar, "conversation_metadata.json", text)?;
            }
            if dump.include_logs {
                let mut lines = Vec::new();
                let mut after = 0;
                loop {
                    let page = self.store.events_page(chat_id, after, 1000)?;
                    let Some((last, _)) = page.last() else { break };
                    after = *last;
                    for (_, text) in &page {
                        lines.extend_from_slice(text.as_bytes());
                        lines.push(b'\n');
                    }
                }
                add_doc(&mut tar, "events.jsonl", lines)?;
            }
            if let Some(ctx) = self.store.bot_context(chat_id)? {
                let text = serde_json::to_vec_pretty(&ctx).map_err(|e| ChatError::Internal(e.to_string()))?;
                add_doc(&mut tar, "bot_context.json", text)?;
            }
            let manifest =
                json!({"format_version": 2, "created_at": super::model::now_ts(), "files": manifest});
            let text =
                serde_json::to_vec_pretty(&manifest).map_err(|e| ChatError::Internal(e.to_string()))?;
            let member = format!("{chat_id}/dump_manifest.json");
            tar.append_data(&mut tar_header(text.len() as u64, false), member, text.as_slice())?;
            let gz = tar.into_inner()?;
            let mut writer = gz.finish()?;
            writer.flush()?;
        }
        temp.as_file().sync_all()?;
        temp.persist(dir.join(&name)).map_err(|e| ChatError::Io(e.error))?;
        self.storage.publish_dump(&name)?;
        Ok(name)
    }

    /// Restores an archive (§10.3); returns the restored conversation's id.
    pub fn restore_archive(
        &self,
        archive: &Path,
        as_id: Option<&str>,
        overwrite: bool,
    ) -> Result<String, ChatError> {
        let limits = self.restore_limits();
        let safe = SafeArchive::open(archive, limits)?;
        let top = safe.top.clone();
        let target = as_id.unwrap_or(&top).to_string();
        if !is_valid_chat_id(&target) {
            return Err(ChatError::validation_with("Invalid chat_id", json!({"field": "chat_id"})));
        }
        let conv: Option<Conversation> = match safe.doc("conversation_metadata.json") {
            Some(raw) => {
                let v: Value = serde_json::from_slice(raw)
                    .map_err(|_| invalid("conversation_metadata.json is not JSON"))?;
                if v.get("chat_id").and_then(Value::as_str) != Some(top.as_str()) {
                    return Err(invalid(
                        "conversation_metadata.json does not belong to the archived conversation",
                    ));
                }
                Some(conversation_from_json(&v)?)
            }
            None => None,
        };
        safe.verify_manifest()?;
        let existing = self.store.conversation_row(&target)?;
        if existing.is_some() && !overwrite {
            return Err(ChatError::Conflict(format!("Conversation already exists: {target}")));
        }
        let Some(mut conv) = conv else {
            // Reference fallback: files only, into the existing conversation.
            let row = existing.ok_or_else(|| invalid("metadata not found in archive"))?;
            self.replace_files(&safe, &row, limits)?;
            return Ok(target);
        };

        let archived_meta: Option<Value> =
            safe.doc("metadata.json").and_then(|b| serde_json::from_slice(b).ok());
        let created = parse_ts(&conv.created_at).unwrap_or_else(chrono::Utc::now);
        let partition_key = archived_meta
            .as_ref()
            .and_then(|m| m.get("partition_key"))
            .and_then(Value::as_str)
            .filter(|k| is_valid_partition_key(k))
            .map(str::to_string)
            .unwrap_or_else(|| self.storage.partition_key(&target, created));
        let new_dir_text = self.storage.conv_dir_text_for(Some(&partition_key), &target);
        let copy = target != top;
        conv.chat_id = target.clone();
        conv.partition_key = Some(partition_key.clone());
        for p in conv.uploaded_files.iter_mut().chain(conv.output_files.iter_mut()) {
            if let Some(n) = rewrite_path(p, &top, &new_dir_text) {
                *p = n;
            }
        }
        for m in &mut conv.messages {
            rewrite_value(&mut m.metadata, &top, &new_dir_text);
            if copy {
                m.message_id = new_uuid();
            }
        }
        for s in &mut conv.workflow_steps {
            for f in [&mut s.input_file, &mut s.output_file].into_iter().flatten() {
                if let Some(n) = rewrite_path(f, &top, &new_dir_text) {
                    *f = n;
                }
            }
            if copy {
                s.step_id = new_uuid();
            }
        }
        let row = conv.row();
        let staging = self.storage.root().join(format!(".restore-{}", new_uuid()));
        std::fs::create_dir_all(&staging)?;
        let result = (|| -> Result<(), ChatError> {
            safe.unpack_conversation_files(&staging, limits)?;
            for folder in FOLDERS {
                std::fs::create_dir_all(staging.join(folder))?;
            }
            let meta =
                json!({"chat_id": target, "created_at": conv.created_at, "partition_key": partition_key});
            std::fs::write(
                staging.join("metadata.json"),
                serde_json::to_string_pretty(&meta).map_err(|e| ChatError::Internal(e.to_string()))?,
            )?;
            let bot = safe.doc("bot_context.json").and_then(|b| serde_json::from_slice::<Value>(b).ok());
            if !self.storage.is_local() {
                // The store has no rename: an overwritten conversation's objects are replaced, and the new
                // ones are removed again when the rows cannot be written.
                if let Some(old) = &existing {
                    self.storage.remove_objects(old)?;
                }
                let written = self.storage.publish_tree(&row, &staging)?;
                if let Err(e) = self.store.insert_full(&conv, overwrite, bot.as_ref()) {
                    self.storage.remove_keys(&written);
                    return Err(e);
                }
                return Ok(());
            }
            let final_dir = self.storage.conv_dir(&row);
            let aside = existing.as_ref().map(|old| {
                let dir = self.storage.conv_dir(old);
                (dir.clone(), dir.with_file_name(format!(".replaced-{}", new_uuid())))
            });
            if let Some((dir, aside)) = &aside {
                if dir.exists() {
                    std::fs::rename(dir, aside)?;
                }
            }
            if let Some(parent) = final_dir.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&staging, &final_dir)?;
            if let Err(e) = self.store.insert_full(&conv, overwrite, bot.as_ref()) {
                let _ = std::fs::rename(&final_dir, &staging);
                if let Some((dir, aside)) = &aside {
                    let _ = std::fs::rename(aside, dir);
                }
                return Err(e);
            }
            if let Some((_, aside)) = aside {
                let _ = std::fs::remove_dir_all(aside);
            }
            Ok(())
        })();
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result.map(|()| target)
    }

    /// Files-only restore into an existing conversation (archives without conversation metadata).
    fn replace_files(
        &self,
        safe: &SafeArchive,
        row: &ConversationRow,
        limits: Limits,
    ) -> Result<(), ChatError> {
        let staging = self.storage.root().join(format!(".restore-{}", new_uuid()));
        std::fs::create_dir_all(&staging)?;
        let result = (|| -> Result<(), ChatError> {
            safe.unpack_conversation_files(&staging, limits)?;
            if !self.storage.is_local() {
                self.storage.publish_tree(row, &staging)?;
                return Ok(());
            }
            let dir = self.storage.conv_dir(row);
            for folder in FOLDERS {
                let mut files = Vec::new();
                collect_files(&staging.join(folder), folder, &mut files)?;
                for (rel, path) in files {
                    let target = dir.join(&rel);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::rename(path, target)?;
                }
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&staging);
        result
    }
}

/// Regular files under `dir` (recursively, links skipped) as `(relative path, path)`, sorted.
fn collect_files(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), ChatError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = e.file_type()?;
        if ARCHIVE_ONLY.contains(&name.as_str()) || name.starts_with('.') {
            continue;
        }
        if kind.is_dir() {
            collect_files(&e.path(), &format!("{rel}/{name}"), out)?;
        } else if kind.is_file() {
            out.push((format!("{rel}/{name}"), e.path()));
        }
    }
    Ok(())
}

/// Reads an archived Conversation (§2.1), normalising timestamps (§1.4: naive inputs are UTC).
fn conversation_from_json(v: &Value) -> Result<Conversation, ChatError> {
    let bad = || invalid("conversation_metadata.json has an unexpected shape");
    let text = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let ts = |o: &Value, k: &str| text(o, k).map(|t| normalize_ts(&t));
    let strings = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let now = format_ts(chrono::Utc::now());
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|m| {
                    Ok(super::model::Message {
                        message_id: text(m, "message_id").unwrap_or_else(new_uuid),
                        message_type: text(m, "message_type").ok_or_else(bad)?,
                        content: text(m, "content").unwrap_or_default(),
                        metadata: m
                            .get("metadata")
                            .filter(|x| x.is_object())
                            .cloned()
                            .unwrap_or_else(|| json!({})),
                        created_at: ts(m, "created_at").unwrap_or_else(|| now.clone()),
                    })
                })
                .collect::<Result<Vec<_>, ChatError>>()
        })
        .transpose()?
        .unwrap_or_default();
    let steps = v
        .get("workflow_steps")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|s| {
                    Ok(super::model::WorkflowStep {
                        step_id: text(s, "step_id").unwrap_or_else(new_uuid),
                        operation: text(s, "operation").ok_or_else(bad)?,
                        arguments: s
                            .get("arguments")
                            .filter(|x| x.is_object())
                            .cloned()
                            .unwrap_or_else(|| json!({})),
                        input_file: text(s, "input_file"),
                        output_file: text(s, "output_file"),
                        status: text(s, "status").unwrap_or_else(|| "pending".into()),
                        progress: s.get("progress").and_then(Value::as_i64).unwrap_or(0),
                        error_message: text(s, "error_message"),
                        started_at: ts(s, "started_at"),
                        completed_at: ts(s, "completed_at"),
                        job_id: text(s, "job_id"),
                        step_index: s.get("step_index").and_then(Value::as_i64),
                    })
                })
                .collect::<Result<Vec<_>, ChatError>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(Conversation {
        chat_id: text(v, "chat_id").ok_or_else(bad)?,
        participant_name: text(v, "participant_name").unwrap_or_else(|| "Orion-1000".into()),
        status: text(v, "status").unwrap_or_else(|| "created".into()),
        messages,
        workflow_steps: steps,
        uploaded_files: strings("uploaded_files"),
        output_files: strings("output_files"),
        metadata: v.get("metadata").filter(|x| x.is_object()).cloned().unwrap_or_else(|| json!({})),
        created_at: ts(v, "created_at").unwrap_or_else(|| now.clone()),
        updated_at: ts(v, "updated_at").unwrap_or(now),
        partition_key: text(v, "partition_key"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_are_checked() {
        assert!(checked_components(b"abc/uploads/a.csv").is_ok());
        assert!(checked_components(b"abc/").is_ok());
        for bad in [&b"/etc/passwd"[..], b"abc/../x", b"abc/./x", b"abc//x", b"C:/x", b"abc\\x", b"a\0b"] {
            assert!(checked_components(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn paths_are_rewritten_to_the_new_location() {
        assert_eq!(
            rewrite_path("./automation/workflows/2026/02/abc/uploads/a.csv", "abc", "/srv/wf/2026/03/copy")
                .as_deref(),
            Some("/srv/wf/2026/03/copy/uploads/a.csv")
        );
        assert_eq!(rewrite_path("abc/outputs/x.xlsx", "abc", "n").as_deref(), Some("n/outputs/x.xlsx"));
        assert_eq!(rewrite_path("somewhere/else.csv", "abc", "n"), None);
    }
}
