//! Where the service keeps its files: REST outputs, conversation files and dump archives.
//!
//! One [`FileStore`] per area, built on the `object_store` crate and chosen once at start from
//! `storage.backend`:
//! - `local` (the embedded default): `LocalFileSystem` over the configured folders (`file.output_folder`,
//!   `chat_workflows.storage.workflows_path`, `dumps_path`); the objects are the files in place, so the
//!   layout is the one of the single-process service and files are served and swept where they are.
//! - `s3`: an S3-compatible bucket (`storage.s3.*`), keys `{prefix}outputs/…`, `{prefix}workflows/…`,
//!   `{prefix}dumps/…` mirroring the local layout. Processing still reads and writes local files: an input
//!   is fetched to a local spool before a step and removed after; an output is written locally, streamed up
//!   (a multipart upload above [`PART_BYTES`]) and removed locally.
//!
//! The stores' I/O runs on one small dedicated runtime, so blocking callers (the job runner, archives) and
//! async handlers share one HTTP client pool that no actix worker owns.

use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, RetryConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Config, S3Config, StorageBackend};

/// Objects larger than this are uploaded in parts of this size (S3's minimum part is 5 MiB).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// How long the start-up and readiness checks wait for the store.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    #[error("file not found")]
    NotFound,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("invalid config value at '{key}': {message}")]
    Config { key: &'static str, message: String },
}

impl FileStoreError {
    fn from_store(e: object_store::Error) -> FileStoreError {
        match e {
            object_store::Error::NotFound { .. } => FileStoreError::NotFound,
            other => FileStoreError::Store(other),
        }
    }
}

impl From<FileStoreError> for std::io::Error {
    fn from(e: FileStoreError) -> std::io::Error {
        match e {
            FileStoreError::Io(io) => io,
            FileStoreError::NotFound => std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            other => std::io::Error::other(other.to_string()),
        }
    }
}

pub type FileResult<T> = Result<T, FileStoreError>;

/// The runtime every store operation runs on (created on first use, never dropped).
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("oxcelize-store")
            .enable_all()
            .build()
            .expect("the file store runtime starts")
    })
}

/// Runs `work` on the store runtime and awaits it from any async context.
async fn on_io<T: Send + 'static>(
    work: impl Future<Output = FileResult<T>> + Send + 'static,
) -> FileResult<T> {
    io_runtime().spawn(work).await.map_err(|e| FileStoreError::Io(std::io::Error::other(e)))?
}

/// Runs `work` on the store runtime and waits for it from synchronous code (meant for the blocking pool;
/// safe anywhere, since the store runtime is never the caller's).
fn block<T: Send + 'static>(work: impl Future<Output = FileResult<T>> + Send + 'static) -> FileResult<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    io_runtime().spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().map_err(|_| FileStoreError::Io(std::io::Error::other("file store task stopped")))?
}

/// The file stores the REST side holds (the chat side builds its own areas, see `chat::storage`).
pub struct Files {
    pub backend: StorageBackend,
    /// REST outputs (`GET {prefix}/files/downloads/{name}`).
    pub outputs: FileStore,
}

impl Files {
    /// Builds the stores named by `storage.backend` (no I/O yet; see [`Files::check`]).
    pub fn from_config(config: &Config) -> FileResult<Files> {
        Ok(Files { backend: config.storage.backend, outputs: FileStore::for_area(config, Area::Outputs)? })
    }

    /// Start-up and readiness check: the store answers a listing (an S3 bucket that is missing, unreachable
    /// or refuses the credentials fails here, with a message naming the key to fix).
    pub async fn check(&self) -> Result<(), String> {
        self.outputs.check().await
    }
}

/// `GET {prefix}/health/ready` check `file_store` (the S3 backend only: local folders have their own).
pub struct StoreProbe(pub FileStore);

impl crate::ReadinessProbe for StoreProbe {
    fn name(&self) -> &str {
        "file_store"
    }

    fn check(&self) -> Result<(), String> {
        let store = self.0.clone();
        block(async move { Ok(store.check().await) }).map_err(|e| e.to_string())?
    }
}

/// One area of the store.
#[derive(Debug, Clone, Copy)]
pub enum Area {
    Outputs,
    Workflows,
    Dumps,
}

impl Area {
    fn local_root(self, config: &Config) -> PathBuf {
        let cw = &config.chat_workflows.storage;
        match self {
            Area::Outputs => config.file.output_folder.clone(),
            Area::Workflows => cw.workflows_path.clone(),
            Area::Dumps => cw.dumps_path.clone(),
        }
    }

    fn key_prefix(self) -> &'static str {
        match self {
            Area::Outputs => "outputs",
            Area::Workflows => "workflows",
            Area::Dumps => "dumps",
        }
    }
}

/// The files of one area: a local folder (`storage.backend: local`) or a key prefix in a bucket.
#[derive(Clone)]
pub struct FileStore {
    store: Arc<dyn ObjectStore>,
    /// `Some` for the local backend: objects are the files under this folder.
    local_root: Option<PathBuf>,
    /// Names the store in errors (`bucket 'b' at http://…`).
    label: String,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

impl FileStore {
    pub fn for_area(config: &Config, area: Area) -> FileResult<FileStore> {
        match config.storage.backend {
            StorageBackend::Local => {
                let root = area.local_root(config);
                std::fs::create_dir_all(&root)?;
                let store = LocalFileSystem::new_with_prefix(&root)?;
                Ok(FileStore {
                    store: Arc::new(store),
                    label: format!("local folder {}", root.display()),
                    local_root: Some(root),
                })
            }
            StorageBackend::S3 => {
                let s3 = &config.storage.s3;
                let bucket = s3_bucket(s3)?;
                let mut prefix = s3.prefix.trim_matches('/').to_string();
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(area.key_prefix());
                let at = if s3.endpoint.is_empty() {
                    format!("region {}", s3.region)
                } else {
                    s3.endpoint.clone()
                };
                Ok(FileStore {
                    store: Arc::new(PrefixStore::new(bucket, prefix.as_str())),
                    local_root: None,
                    label: format!("bucket '{}' at {at} (prefix '{prefix}/')", s3.bucket),
                })
            }
        }
    }

    /// True for the local backend (objects are files in place).
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    /// The local file of `key` (local backend only).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|root| {
            let mut path = root.clone();
            path.extend(key.split('/').filter(|s| !s.is_empty()));
            path
        })
    }

    /// See [`Files::check`].
    pub async fn check(&self) -> Result<(), String> {
        let store = self.store.clone();
        let listing = on_io(async move {
            let first = tokio::time::timeout(CHECK_TIMEOUT, async move { store.list(None).next().await })
                .await
                .map_err(|_| FileStoreError::Io(std::io::Error::other("no answer within 15 s")))?;
            match first {
                Some(Err(e)) => Err(FileStoreError::Store(e)),
                _ => Ok(()),
            }
        })
        .await;
        listing.map_err(|e| describe_check_failure(&self.label, &e))
    }

    /// Metadata of `key`, `None` when it does not exist.
    pub async fn head(&self, key: &str) -> FileResult<Option<ObjectMeta>> {
        let (store, key) = (self.store.clone(), Key::from(key));
        on_io(async move { head(store, key).await }).await
    }

    /// [`FileStore::head`] from blocking code.
    pub fn head_blocking(&self, key: &str) -> FileResult<Option<ObjectMeta>> {
        let (store, key) = (self.store.clone(), Key::from(key));
        block(async move { head(store, key).await })
    }

    /// The bytes of `key` (all, or `range`), streamed.
    pub async fn get_stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> FileResult<BoxStream<'static, Result<Bytes, std::io::Error>>> {
        let (store, key) = (self.store.clone(), Key::from(key));
        let opts = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result =
            on_io(async move { store.get_opts(&key, opts).await.map_err(FileStoreError::from_store) })
                .await?;
        // The body is read on the store runtime too, handed over through a small bounded channel.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        io_runtime().spawn(async move {
            let mut body = result.into_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed())
    }

    /// Streams the local file `source` into `key` (one request up to [`PART_BYTES`], a multipart upload
    /// above). The local backend moves the file into place instead (a no-op when it is already there).
    pub fn put_file_blocking(&self, key: &str, source: &Path) -> FileResult<()> {
        if let Some(target) = self.local_path(key) {
            if target != source {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::rename(source, &target)?;
            }
            return Ok(());
        }
        let (store, key, source) = (self.store.clone(), Key::from(key), source.to_path_buf());
        block(async move { upload(store, key, &source).await })
    }

    /// [`FileStore::put_file_blocking`] from async code.
    pub async fn put_file(&self, key: &str, source: &Path) -> FileResult<()> {
        if self.is_local() {
            let (this, key, source) = (self.clone(), key.to_string(), source.to_path_buf());
            return tokio::task::spawn_blocking(move || this.put_file_blocking(&key, &source))
                .await
                .map_err(|e| FileStoreError::Io(std::io::Error::other(e)))?;
        }
        let (store, key, source) = (self.store.clone(), Key::from(key), source.to_path_buf());
        on_io(async move { upload(store, key, &source).await }).await
    }

    /// A small document (metadata.json) written whole.
    pub fn put_bytes_blocking(&self, key: &str, bytes: Vec<u8>) -> FileResult<()> {
        let (store, key) = (self.store.clone(), Key::from(key));
        block(async move {
            store.put(&key, bytes.into()).await?;
            Ok(())
        })
    }

    /// Streams `key` into a new local file `target` (created with its parent folders).
    pub fn fetch_blocking(&self, key: &str, target: &Path) -> FileResult<()> {
        let (store, key, target) = (self.store.clone(), Key::from(key), target.to_path_buf());
        block(async move {
            let result = store.get(&key).await.map_err(FileStoreError::from_store)?;
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let mut file = tokio::fs::File::create(&target).await?;
            let mut body = result.into_stream();
            let written = async {
                while let Some(chunk) = body.next().await {
                    file.write_all(&chunk?).await?;
                }
                file.flush().await?;
                Ok::<(), FileStoreError>(())
            }
            .await;
            if written.is_err() {
                let _ = tokio::fs::remove_file(&target).await;
            }
            written
        })
    }

    /// Deletes `key` (a missing object is not an error).
    pub fn delete_blocking(&self, key: &str) -> FileResult<()> {
        let (store, key) = (self.store.clone(), Key::from(key));
        block(async move {
            match store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Every object under `prefix` (all when empty).
    pub fn list_blocking(&self, prefix: &str) -> FileResult<Vec<ObjectMeta>> {
        let store = self.store.clone();
        let prefix = (!prefix.is_empty()).then(|| Key::from(prefix));
        block(async move { Ok(store.list(prefix.as_ref()).try_collect().await?) })
    }

    /// Deletes every object under `prefix` (a conversation); returns how many.
    pub fn delete_prefix_blocking(&self, prefix: &str) -> FileResult<usize> {
        let store = self.store.clone();
        let prefix = Key::from(prefix);
        block(async move {
            let keys = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
            let deleted: Vec<Key> = store.delete_stream(keys).try_collect().await?;
            Ok(deleted.len())
        })
    }

    /// Deletes the objects of this area last modified longer than `retention` ago; returns how many.
    pub async fn sweep_older_than(&self, retention: Duration) -> FileResult<usize> {
        let store = self.store.clone();
        on_io(async move {
            let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
            let expired: Vec<Key> = store
                .list(None)
                .try_filter_map(|m| async move { Ok((m.last_modified < cutoff).then_some(m.location)) })
                .try_collect()
                .await?;
            let count = expired.len();
            let stream = futures_util::stream::iter(expired.into_iter().map(Ok)).boxed();
            let _: Vec<Key> = store.delete_stream(stream).try_collect().await?;
            Ok(count)
        })
        .await
    }
}

async fn head(store: Arc<dyn ObjectStore>, key: Key) -> FileResult<Option<ObjectMeta>> {
    match store.head(&key).await {
        Ok(meta) => Ok(Some(meta)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads `source` into the store through a `BufWriter`: one PUT for a small file, a multipart upload of
/// [`PART_BYTES`] parts for a large one (aborted on error, so no parts are left behind).
async fn upload(store: Arc<dyn ObjectStore>, key: Key, source: &Path) -> FileResult<()> {
    let mut file = tokio::fs::File::open(source).await?;
    let mut writer =
        BufWriter::with_capacity(store, key, PART_BYTES).with_max_concurrency(UPLOAD_CONCURRENCY);
    let mut buf = vec![0u8; 1024 * 1024];
    let copied = async {
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.put(Bytes::copy_from_slice(&buf[..n])).await?;
        }
        writer.shutdown().await?;
        Ok::<(), FileStoreError>(())
    }
    .await;
    if copied.is_err() {
        let _ = writer.abort().await;
    }
    copied
}

/// The S3 client of `storage.s3.*`: path-style requests, bounded retries, a connect timeout and no request
/// timeout (a large download streams for as long as it takes).
fn s3_bucket(s3: &S3Config) -> FileResult<Arc<dyn ObjectStore>> {
    // `allow_http` belongs to the client options: set on the builder before `with_client_options`, it was
    // replaced by these options' default (https only), and reqwest refused every http:// request.
    let client = ClientOptions::new()
        .with_allow_http(s3.allow_http)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout_disabled();
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_virtual_hosted_style_request(false)
        .with_client_options(client)
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
    if !s3.endpoint.is_empty() {
        builder = builder.with_endpoint(&s3.endpoint);
    }
    match (s3.access_key_id.is_empty(), s3.secret_access_key.is_empty()) {
        (false, false) => {
            builder =
                builder.with_access_key_id(&s3.access_key_id).with_secret_access_key(&s3.secret_access_key)
        }
        // No credentials: unsigned requests (never an instance-metadata lookup).
        (true, true) => builder = builder.with_skip_signature(true),
        (false, true) => {
            return Err(FileStoreError::Config {
                key: "storage.s3.secret_access_key",
                message: "must be set with storage.s3.access_key_id".into(),
            })
        }
        (true, false) => {
            return Err(FileStoreError::Config {
                key: "storage.s3.access_key_id",
                message: "must be set with storage.s3.secret_access_key".into(),
            })
        }
    }
    let store =
        builder.build().map_err(|e| FileStoreError::Config { key: "storage.s3", message: e.to_string() })?;
    Ok(Arc::new(store))
}

/// A start-up/readiness failure with the key most likely to fix it.
fn describe_check_failure(label: &str, e: &FileStoreError) -> String {
    let text = with_causes(e);
    let lower = text.to_ascii_lowercase();
    let key = if lower.contains("nosuchbucket") || lower.contains("not found") || lower.contains("404") {
        "storage.s3.bucket"
    } else if ["403", "accessdenied", "signature", "invalidaccesskeyid", "forbidden", "401"]
        .iter()
        .any(|k| lower.contains(k))
    {
        "storage.s3.access_key_id / storage.s3.secret_access_key"
    } else {
        "storage.s3.endpoint"
    };
    format!("file store {label} is not usable (check {key}): {text}")
}

/// `e` followed by each of its causes not already in the text: an HTTP client's own message is often only
/// "builder error" or "error sending request", and the reason is in its source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}
