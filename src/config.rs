//! Typed mirror of `configs/application.yml`.
//! Precedence: defaults in code, then the YAML file, then `OXCELIZE_*` environment overrides; validated once at start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

/// Environment variables starting with this prefix override config keys; `__` separates nesting levels,
/// e.g. `OXCELIZE_APP__PORT=6000` or `OXCELIZE_CHAT_WORKFLOWS__WEBSOCKET__PORT=6001`.
pub const ENV_PREFIX: &str = "OXCELIZE_";

/// Keys that Pycelize configs carry but that have no effect (in Pycelize either); they are accepted with a
/// warning so that an existing config file loads, instead of being silently ignored.
const LEGACY_KEYS: &[&str] = &[
    "api.version",
    "api.rate_limit",
    "api.timeout",
    "excel.auto_adjust_columns",
    "sql.supported_databases",
    "sql.default_database",
    "sql.default_batch_size",
    "sql.include_transaction",
    "sql.include_error_handling",
    "normalization.enabled",
    "normalization.generate_report",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {source}")]
    Yaml { path: String, source: serde_yaml::Error },
    #[error("invalid config value at '{key}': {message}")]
    Invalid { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub app: AppConfig,
    pub api: ApiConfig,
    pub file: FileConfig,
    pub excel: ExcelConfig,
    pub normalization: NormalizationConfig,
    pub logging: LoggingConfig,
    pub cors: CorsConfig,
    pub limits: LimitsConfig,
    pub chat_workflows: ChatWorkflowsConfig,
    pub cluster: ClusterConfig,
    pub storage: FileStorageConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// `data.service` of the health check and the start-up banner.
    pub name: String,
    /// `data.version` of the health check and `meta.api_version` of every response.
    pub version: String,
    pub host: String,
    pub port: u16,
    /// Debug mode: more verbose request logging; no API effect.
    pub debug: bool,
    /// Origin used for every download URL when set (e.g. `https://api.example.org`).
    pub public_base_url: Option<String>,
    /// Honour `Forwarded` / `X-Forwarded-*` when building download URLs.
    pub trust_proxy_headers: Option<bool>,
    /// HTTP worker threads; 0 = one per CPU core.
    pub workers: usize,
    /// Seconds between two heap trims that give freed memory back to the OS; 0 = never.
    pub memory_trim_interval_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub prefix: String,
    pub locale: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub upload_folder: PathBuf,
    pub output_folder: PathBuf,
    pub max_file_size_mb: u64,
    /// A request body must arrive at this many bytes per second on average over each
    /// `upload_rate_window_seconds` window, else 408 (0 = no minimum rate).
    pub upload_min_bytes_per_second: u64,
    /// The window (and the grace period at the start of a body) over which the minimum rate is judged.
    pub upload_rate_window_seconds: u64,
    /// Request bodies one client address may have in transit at once; more get 429 (0 = unlimited).
    pub max_concurrent_uploads_per_ip: u64,
    /// Temporary files (uploads in transit, outputs being written) older than this are leftovers of a
    /// killed process and are removed by the periodic sweep; all of them are removed at start.
    pub temp_file_max_age_minutes: u64,
    /// How often the sweep for leftover temporary files runs.
    pub temp_sweep_interval_seconds: u64,
    pub supported_encodings: Vec<String>,
    pub allowed_extensions: Vec<String>,
    pub output_retention_hours: u64,
    pub max_uncompressed_mb: u64,
    /// Largest number of cells (rows × columns) a sheet may declare before it is materialised.
    pub max_cells: u64,
    /// Budget of what one operation produces: bytes of cell text materialised while reading, and bytes
    /// of each text output written (shared-string and amplification bombs → 413).
    pub max_output_mb: u64,
    /// Largest uncompressed:compressed ratio of a worksheet or shared-strings part of an uploaded workbook
    /// (deflate bombs under the size limits → 413); 0 = no ratio guard.
    pub max_compression_ratio: u64,
    /// Parts that decompress to less than this many MB are never judged by their ratio.
    pub compression_check_min_mb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExcelConfig {
    pub default_sheet_name: String,
    pub max_column_width: u32,
    pub include_info_sheet: bool,
    pub info_sheet_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizationConfig {
    pub backup_original: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    pub level: String,
    /// Log line layout; `{timestamp}`, `{level}`, `{target}` and `{message}` are replaced.
    pub format: String,
    /// Log file (its folder is created); empty = stderr only.
    pub file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// `["*"]` = any origin; otherwise exact origins.
    pub allowed_origins: Vec<String>,
}

/// Admission of heavy work (see `crate::admission`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Heavy tasks (processing requests and workflow steps) running at once; 0 = one per CPU core.
    pub max_concurrent_processing: usize,
    /// Processing requests waiting for a slot; more get 503 at once (workflow steps always wait).
    pub max_queued_processing: usize,
    /// A processing request still waiting after this long gets 503.
    pub queue_timeout_seconds: u64,
    /// Sum of the memory estimates of running heavy tasks; 0 = a quarter of the machine's memory.
    pub max_processing_memory_mb: u64,
    /// Processing requests with a declared body below this size are light (never queued); 0 = none.
    pub light_request_max_kb: u64,
    /// `Retry-After` of a 503 from admission.
    pub retry_after_seconds: u64,
}

/// Cluster mode: several nodes sharing PostgreSQL (source of truth, job queue) and Redis (live fan-out).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    pub enabled: bool,
    /// This node's name in leases, logs and metrics; empty = `<hostname>-<pid>` at start.
    pub node_id: String,
    pub postgres_url: String,
    /// Connections this node keeps to PostgreSQL at most (event appends, jobs and requests share them).
    pub postgres_pool_size: usize,
    pub redis_url: String,
    /// A job's lease lasts this long unless its node renews it (every third of it).
    pub job_lease_seconds: u64,
    /// A job is claimed at most this many times; when its node dies during the last attempt, the node that
    /// finds the expired lease fails it with a clear error.
    pub max_job_attempts: u32,
}

/// Where files (uploads, outputs, workflow files) live: local folders or an S3-compatible store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileStorageConfig {
    pub backend: StorageBackend,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Local,
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// e.g. "http://127.0.0.1:9000"; empty = AWS's endpoint for `region`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Key prefix of every object (e.g. "oxcelize/"); may be empty.
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow a plain-http endpoint (local test stores).
    pub allow_http: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            node_id: String::new(),
            postgres_url: String::new(),
            postgres_pool_size: 16,
            redis_url: String::new(),
            job_lease_seconds: 30,
            max_job_attempts: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatWorkflowsConfig {
    pub enabled: bool,
    pub max_connections: u64,
    pub public_base_url: Option<String>,
    pub trust_proxy_headers: Option<bool>,
    pub participant_name_theme: String,
    pub websocket: WebSocketConfig,
    pub storage: StorageConfig,
    pub backup: BackupConfig,
    pub partition: PartitionConfig,
    pub file: ChatFileConfig,
    pub execution: ExecutionConfig,
    pub dump: DumpConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    pub host: String,
    pub port: u16,
    /// Seconds between server ping frames; 0 disables keepalive.
    pub ping_interval: u64,
    /// Seconds to wait for the pong; must be below `ping_interval`.
    pub ping_timeout: u64,
    pub serve_on_rest_port: bool,
    pub require_existing_chat: bool,
    pub max_message_bytes: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_connections_per_ip: u64,
    pub max_connections_per_chat: u64,
    pub send_queue: SendQueueConfig,
    pub rate_limit: RateLimitConfig,
    pub idle_timeout_seconds: u64,
    pub unbound_timeout_seconds: u64,
    pub allowed_origins: Vec<String>,
    pub require_origin: bool,
    pub reject_at_handshake: bool,
    pub auth: WsAuthConfig,
    pub replay: ReplayConfig,
    pub shutdown_grace_seconds: u64,
    /// Test only: a bare echo endpoint at `/echo` on the WebSocket port for the Autobahn conformance run.
    pub test_echo_route: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendQueueConfig {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub write_timeout_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub burst: u32,
    pub per_second: f64,
    pub max_violations: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsAuthConfig {
    pub enabled: bool,
    pub tokens: Vec<String>,
    pub jwt_secret: Option<String>,
    pub allow_query_token: bool,
    pub timeout_seconds: u64,
    /// Also require `Authorization: Bearer <token>` on the REST API (health stays open).
    pub protect_rest_api: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    pub retention_hours: u64,
    pub max_events_per_chat: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub workflows_path: PathBuf,
    pub dumps_path: PathBuf,
    pub sqlite_path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    pub enabled: bool,
    pub interval_minutes: u64,
    pub snapshot_path: PathBuf,
    pub retention_days: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionStrategy {
    TimeBased,
    HashBased,
    FolderBased,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionConfig {
    pub enabled: bool,
    pub strategy: PartitionStrategy,
    pub subfolder_format: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatFileConfig {
    pub max_upload_size_mb: u64,
    pub allowed_extensions: Vec<String>,
    pub chunk_size_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    pub max_steps: usize,
    pub step_timeout_seconds: u64,
    pub stream_progress: bool,
    /// Minimum gap between two intermediate `progress` events of one step (websocket.md C.4).
    pub progress_interval_ms: u64,
    pub save_intermediate_files: bool,
    pub max_concurrent_jobs: usize,
    pub job_retention_hours: u64,
    pub shutdown_grace_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DumpConfig {
    pub compression: String,
    pub include_metadata: bool,
    pub include_logs: bool,
    pub max_restore_size_mb: u64,
    pub max_restore_members: u64,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            name: "oxcelize".into(),
            version: "v0.0.1".into(),
            host: "127.0.0.1".into(),
            port: 5050,
            debug: false,
            public_base_url: None,
            trust_proxy_headers: None,
            workers: 0,
            memory_trim_interval_seconds: 5,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { prefix: "/api/v1".into(), locale: "en_US".into() }
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            upload_folder: "uploads".into(),
            output_folder: "outputs".into(),
            max_file_size_mb: 50,
            upload_min_bytes_per_second: 1024,
            upload_rate_window_seconds: 15,
            max_concurrent_uploads_per_ip: 16,
            temp_file_max_age_minutes: 60,
            temp_sweep_interval_seconds: 600,
            supported_encodings: ["utf-8", "utf-8-sig", "cp1252", "latin1", "iso-8859-1"]
                .map(String::from)
                .to_vec(),
            allowed_extensions: [".xlsx", ".xls", ".xlsm", ".csv"].map(String::from).to_vec(),
            output_retention_hours: 24,
            max_uncompressed_mb: 500,
            max_cells: 50_000_000,
            max_output_mb: 1024,
            max_compression_ratio: 100,
            compression_check_min_mb: 16,
        }
    }
}

impl Default for ExcelConfig {
    fn default() -> Self {
        ExcelConfig {
            default_sheet_name: "Sheet1".into(),
            max_column_width: 50,
            include_info_sheet: true,
            info_sheet_name: "Info".into(),
        }
    }
}

impl Default for NormalizationConfig {
    fn default() -> Self {
        NormalizationConfig { backup_original: true }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "INFO".into(),
            format: "{timestamp} [{level}] {target}: {message}".into(),
            file: "logs/oxcelize.log".into(),
        }
    }
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig { allowed_origins: vec!["*".into()] }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_concurrent_processing: 0,
            max_queued_processing: 16,
            queue_timeout_seconds: 30,
            max_processing_memory_mb: 0,
            light_request_max_kb: 1024,
            retry_after_seconds: 5,
        }
    }
}

impl Default for ChatWorkflowsConfig {
    fn default() -> Self {
        ChatWorkflowsConfig {
            enabled: true,
            max_connections: 10,
            public_base_url: None,
            trust_proxy_headers: None,
            participant_name_theme: "random".into(),
            websocket: WebSocketConfig::default(),
            storage: StorageConfig::default(),
            backup: BackupConfig::default(),
            partition: PartitionConfig::default(),
            file: ChatFileConfig::default(),
            execution: ExecutionConfig::default(),
            dump: DumpConfig::default(),
        }
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            host: "127.0.0.1".into(),
            port: 5051,
            ping_interval: 30,
            ping_timeout: 10,
            serve_on_rest_port: true,
            require_existing_chat: false,
            max_message_bytes: 65_536,
            max_subscriptions_per_connection: 20,
            max_connections_per_ip: 0,
            max_connections_per_chat: 0,
            send_queue: SendQueueConfig::default(),
            rate_limit: RateLimitConfig::default(),
            idle_timeout_seconds: 0,
            unbound_timeout_seconds: 300,
            allowed_origins: Vec::new(),
            require_origin: false,
            reject_at_handshake: false,
            auth: WsAuthConfig::default(),
            replay: ReplayConfig::default(),
            shutdown_grace_seconds: 5,
            test_echo_route: false,
        }
    }
}

impl Default for SendQueueConfig {
    fn default() -> Self {
        SendQueueConfig { max_messages: 512, max_bytes: 4 * 1024 * 1024, write_timeout_seconds: 10 }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { burst: 30, per_second: 1.0, max_violations: 10 }
    }
}

impl Default for WsAuthConfig {
    fn default() -> Self {
        WsAuthConfig {
            enabled: false,
            tokens: Vec::new(),
            jwt_secret: None,
            allow_query_token: true,
            timeout_seconds: 5,
            protect_rest_api: false,
        }
    }
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig { retention_hours: 24, max_events_per_chat: 1000 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            workflows_path: "./automation/workflows".into(),
            dumps_path: "./automation/dumps".into(),
            sqlite_path: "./automation/sqlite/chat.db".into(),
        }
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            enabled: true,
            interval_minutes: 60,
            snapshot_path: "./automation/sqlite/snapshots".into(),
            retention_days: 30,
        }
    }
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            enabled: true,
            strategy: PartitionStrategy::TimeBased,
            subfolder_format: "%Y/%m".into(),
        }
    }
}

impl Default for ChatFileConfig {
    fn default() -> Self {
        ChatFileConfig {
            max_upload_size_mb: 50,
            allowed_extensions: [".csv", ".xlsx", ".xls", ".json"].map(String::from).to_vec(),
            chunk_size_bytes: 8192,
        }
    }
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            max_steps: 50,
            step_timeout_seconds: 300,
            stream_progress: true,
            progress_interval_ms: 250,
            save_intermediate_files: true,
            max_concurrent_jobs: 5,
            job_retention_hours: 168,
            shutdown_grace_seconds: 30,
        }
    }
}

impl Default for DumpConfig {
    fn default() -> Self {
        DumpConfig {
            compression: "gzip".into(),
            include_metadata: true,
            include_logs: true,
            max_restore_size_mb: 1024,
            max_restore_members: 10_000,
        }
    }
}

/// The result of loading: the config plus warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Loads `path` (a missing file is an error), applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_yaml_with_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses YAML text, applies the given `OXCELIZE_*` variables and validates.
    pub fn from_yaml_with_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut tree: Value = if text.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            serde_yaml::from_str(text)
                .map_err(|source| ConfigError::Yaml { path: origin.to_string(), source })?
        };
        if tree.is_null() {
            tree = Value::Mapping(Default::default());
        }
        let defaults = serde_yaml::to_value(Config::default()).unwrap_or(Value::Null);
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else { continue };
            // `OXCELIZE_TEST_*` name the test services (.ci/services.sh), not config keys.
            if rest.starts_with("TEST_") {
                continue;
            }
            let segments: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if segments.iter().any(|s| s.is_empty()) {
                return Err(ConfigError::Env { var, message: "empty key segment".into() });
            }
            // A text key takes the variable verbatim: read as YAML, a secret such as `12345` or `ab #cd`
            // would become a number or lose its end.
            let value: Value = if matches!(value_at(&defaults, &segments), Some(Value::String(_))) {
                Value::String(raw)
            } else {
                serde_yaml::from_str(&raw).unwrap_or(Value::String(raw.clone()))
            };
            set_path(&mut tree, &segments, value).map_err(|message| ConfigError::Env { var, message })?;
        }
        // Reference rule: without a `chat_workflows` section the feature is off.
        if let Value::Mapping(map) = &mut tree {
            if !map.contains_key("chat_workflows") {
                let mut section = serde_yaml::Mapping::new();
                section.insert("enabled".into(), Value::Bool(false));
                map.insert("chat_workflows".into(), Value::Mapping(section));
            }
        }
        let mut warnings = Vec::new();
        strip_unknown_keys(
            &mut tree,
            &serde_yaml::to_value(Config::default()).unwrap_or(Value::Null),
            "",
            &mut warnings,
        );
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| ConfigError::Invalid {
            key: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    /// The cluster section and the file storage backend (reachability is checked when they connect).
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        if cluster.enabled {
            if !(cluster.postgres_url.starts_with("postgres://")
                || cluster.postgres_url.starts_with("postgresql://"))
            {
                return Err(invalid(
                    "cluster.postgres_url",
                    "must be a postgres:// URL when cluster.enabled",
                ));
            }
            if !(cluster.redis_url.starts_with("redis://") || cluster.redis_url.starts_with("rediss://")) {
                return Err(invalid(
                    "cluster.redis_url",
                    "must be a redis:// or rediss:// URL when cluster.enabled",
                ));
            }
            // A running job holds a connection while it records a step and needs another one meanwhile
            // (its events); two spare for requests.
            let needed = 2 * self.chat_workflows.execution.max_concurrent_jobs + 2;
            if cluster.postgres_pool_size < needed {
                return Err(invalid(
                    "cluster.postgres_pool_size",
                    format!(
                        "must be at least 2 × chat_workflows.execution.max_concurrent_jobs + 2 ({needed})"
                    ),
                ));
            }
        }
        if !(2..=1000).contains(&cluster.postgres_pool_size) {
            return Err(invalid("cluster.postgres_pool_size", "must be between 2 and 1000"));
        }
        if cluster.job_lease_seconds < 3 {
            return Err(invalid("cluster.job_lease_seconds", "must be at least 3"));
        }
        if cluster.max_job_attempts == 0 {
            return Err(invalid("cluster.max_job_attempts", "must be at least 1"));
        }
        if self.storage.backend == StorageBackend::S3 {
            let s3 = &self.storage.s3;
            if s3.bucket.is_empty() {
                return Err(invalid("storage.s3.bucket", "must be set when storage.backend is s3"));
            }
            let has_scheme = s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://");
            if !s3.endpoint.is_empty() && !has_scheme {
                return Err(invalid("storage.s3.endpoint", "must start with http:// or https://"));
            }
            if s3.endpoint.starts_with("http://") && !s3.allow_http {
                return Err(invalid("storage.s3.allow_http", "must be true for a plain http:// endpoint"));
            }
            // Both or neither (unsigned requests); one alone is a typo, never a silent anonymous client.
            if s3.access_key_id.is_empty() != s3.secret_access_key.is_empty() {
                let missing = if s3.access_key_id.is_empty() {
                    "storage.s3.access_key_id"
                } else {
                    "storage.s3.secret_access_key"
                };
                return Err(invalid(missing, "access_key_id and secret_access_key must be set together"));
            }
        }
        Ok(())
    }

    /// This node's id: `cluster.node_id`, or `<hostname>-<pid>` when it is empty.
    pub fn node_id(&self) -> String {
        if !self.cluster.node_id.is_empty() {
            return self.cluster.node_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".to_string());
        format!("{host}-{}", std::process::id())
    }

    /// Checks relations and ranges the types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.api.prefix.is_empty()
            && (!self.api.prefix.starts_with('/') || self.api.prefix.ends_with('/'))
        {
            return Err(invalid("api.prefix", "must start with '/' and not end with '/' (or be empty)"));
        }
        if self.file.max_file_size_mb == 0 {
            return Err(invalid("file.max_file_size_mb", "must be at least 1"));
        }
        if !(1..=3600).contains(&self.file.upload_rate_window_seconds) {
            return Err(invalid("file.upload_rate_window_seconds", "must be between 1 and 3600"));
        }
        if self.file.temp_file_max_age_minutes == 0 {
            return Err(invalid("file.temp_file_max_age_minutes", "must be at least 1"));
        }
        if self.file.temp_sweep_interval_seconds == 0 {
            return Err(invalid("file.temp_sweep_interval_seconds", "must be at least 1"));
        }
        if self.file.max_uncompressed_mb == 0 {
            return Err(invalid("file.max_uncompressed_mb", "must be at least 1"));
        }
        if self.file.max_cells == 0 {
            return Err(invalid("file.max_cells", "must be at least 1"));
        }
        if self.file.max_output_mb == 0 {
            return Err(invalid("file.max_output_mb", "must be at least 1"));
        }
        if self.file.supported_encodings.is_empty() {
            return Err(invalid("file.supported_encodings", "must list at least one encoding"));
        }
        for name in &self.file.supported_encodings {
            if !is_known_encoding(name) {
                return Err(invalid("file.supported_encodings", format!("unknown encoding '{name}'")));
            }
        }
        let bad_extension =
            |e: &String| e.len() < 2 || !e.starts_with('.') || e[1..].contains(['.', '/', ' ']);
        if self.file.allowed_extensions.is_empty() || self.file.allowed_extensions.iter().any(bad_extension) {
            return Err(invalid("file.allowed_extensions", "must list extensions such as \".xlsx\""));
        }
        if self.excel.default_sheet_name.is_empty() || self.excel.default_sheet_name.chars().count() > 31 {
            return Err(invalid("excel.default_sheet_name", "must be 1-31 characters"));
        }
        if self.excel.info_sheet_name.is_empty() || self.excel.info_sheet_name.chars().count() > 31 {
            return Err(invalid("excel.info_sheet_name", "must be 1-31 characters"));
        }
        if self.excel.max_column_width == 0 {
            return Err(invalid("excel.max_column_width", "must be at least 1"));
        }
        if log_level_filter(&self.logging.level).is_none() {
            return Err(invalid("logging.level", format!("unknown level '{}'", self.logging.level)));
        }
        for (key, url) in [
            ("app.public_base_url", &self.app.public_base_url),
            ("chat_workflows.public_base_url", &self.chat_workflows.public_base_url),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(key, "must start with http:// or https://"));
                }
            }
        }
        if self.limits.queue_timeout_seconds == 0 {
            return Err(invalid("limits.queue_timeout_seconds", "must be at least 1"));
        }
        if self.limits.retry_after_seconds == 0 {
            return Err(invalid("limits.retry_after_seconds", "must be at least 1"));
        }
        self.validate_cluster()?;
        let cw = &self.chat_workflows;
        let ws = &cw.websocket;
        if ws.ping_interval > 0 && ws.ping_timeout > 0 && ws.ping_timeout >= ws.ping_interval {
            return Err(invalid(
                "chat_workflows.websocket.ping_timeout",
                "must be smaller than chat_workflows.websocket.ping_interval",
            ));
        }
        if cw.max_connections == 0 {
            return Err(invalid("chat_workflows.max_connections", "must be at least 1"));
        }
        if ws.max_message_bytes < 16 {
            return Err(invalid("chat_workflows.websocket.max_message_bytes", "must be at least 16"));
        }
        if ws.send_queue.max_messages == 0 || ws.send_queue.max_bytes == 0 {
            return Err(invalid("chat_workflows.websocket.send_queue", "bounds must be at least 1"));
        }
        if !(ws.rate_limit.per_second.is_finite() && ws.rate_limit.per_second > 0.0) {
            return Err(invalid(
                "chat_workflows.websocket.rate_limit.per_second",
                "must be a positive number",
            ));
        }
        if ws.rate_limit.burst == 0 {
            return Err(invalid("chat_workflows.websocket.rate_limit.burst", "must be at least 1"));
        }
        let auth = &ws.auth;
        if auth.enabled && auth.tokens.is_empty() && auth.jwt_secret.as_deref().unwrap_or("").is_empty() {
            return Err(invalid(
                "chat_workflows.websocket.auth",
                "enabled without any tokens or jwt_secret: nobody could connect",
            ));
        }
        if auth.tokens.iter().any(|t| t.trim().is_empty() || t.trim() != t || t.len() > 8192) {
            return Err(invalid(
                "chat_workflows.websocket.auth.tokens",
                "tokens must be non-empty, without surrounding spaces, at most 8192 bytes",
            ));
        }
        if auth.jwt_secret.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("chat_workflows.websocket.auth.jwt_secret", "must not be empty (or null)"));
        }
        if auth.enabled && auth.timeout_seconds == 0 {
            return Err(invalid("chat_workflows.websocket.auth.timeout_seconds", "must be at least 1"));
        }
        if auth.protect_rest_api && !auth.enabled {
            return Err(invalid(
                "chat_workflows.websocket.auth.protect_rest_api",
                "has no effect unless chat_workflows.websocket.auth.enabled is true",
            ));
        }
        for entry in &ws.allowed_origins {
            crate::ws::origin::OriginPattern::parse(entry)
                .map_err(|m| invalid("chat_workflows.websocket.allowed_origins", m))?;
        }
        if cw.partition.subfolder_format.is_empty()
            || cw.partition.subfolder_format.contains("..")
            || cw.partition.subfolder_format.starts_with('/')
        {
            return Err(invalid(
                "chat_workflows.partition.subfolder_format",
                "must be a relative strftime pattern",
            ));
        }
        if !["random", "sea", "land", "celestial"].contains(&cw.participant_name_theme.as_str()) {
            return Err(invalid(
                "chat_workflows.participant_name_theme",
                "must be one of random, sea, land, celestial",
            ));
        }
        if cw.execution.max_concurrent_jobs == 0 {
            return Err(invalid("chat_workflows.execution.max_concurrent_jobs", "must be at least 1"));
        }
        if cw.execution.max_steps == 0 {
            return Err(invalid("chat_workflows.execution.max_steps", "must be at least 1"));
        }
        if cw.file.max_upload_size_mb == 0 {
            return Err(invalid("chat_workflows.file.max_upload_size_mb", "must be at least 1"));
        }
        if cw.file.chunk_size_bytes == 0 {
            return Err(invalid("chat_workflows.file.chunk_size_bytes", "must be at least 1"));
        }
        Ok(())
    }

    /// The origin setting for download URLs: `app.*` first, the `chat_workflows.*` copy as fallback.
    pub fn public_base_url(&self) -> Option<&str> {
        self.app.public_base_url.as_deref().or(self.chat_workflows.public_base_url.as_deref())
    }

    pub fn trust_proxy_headers(&self) -> bool {
        self.app.trust_proxy_headers.or(self.chat_workflows.trust_proxy_headers).unwrap_or(false)
    }

    /// Whole-request body limit for the processing endpoints, in bytes.
    pub fn max_body_bytes(&self) -> u64 {
        self.file.max_file_size_mb.saturating_mul(1024 * 1024)
    }

    /// `file.max_output_mb` in bytes: the cap on each text output an operation writes.
    pub fn max_output_bytes(&self) -> u64 {
        self.file.max_output_mb.saturating_mul(1024 * 1024)
    }
}

/// Maps Python-style level names (`DEBUG`, `WARNING`, …) to a `log` filter.
pub fn log_level_filter(level: &str) -> Option<log::LevelFilter> {
    Some(match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => log::LevelFilter::Trace,
        "DEBUG" => log::LevelFilter::Debug,
        "INFO" => log::LevelFilter::Info,
        "WARN" | "WARNING" => log::LevelFilter::Warn,
        "ERROR" | "CRITICAL" | "FATAL" => log::LevelFilter::Error,
        "OFF" => log::LevelFilter::Off,
        _ => return None,
    })
}

/// Encoding names accepted in `file.supported_encodings` (Python spellings included).
pub fn is_known_encoding(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    matches!(n.as_str(), "utf-8" | "utf8" | "utf-8-sig" | "utf8-sig")
        || encoding_rs::Encoding::for_label(n.as_bytes()).is_some()
        || matches!(n.as_str(), "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "cp1252")
}

/// The value at `segments` (lower-case keys) of `tree`, if any.
fn value_at<'a>(tree: &'a Value, segments: &[String]) -> Option<&'a Value> {
    segments.iter().try_fold(tree, |node, key| node.as_mapping()?.get(key.as_str()))
}

fn set_path(tree: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let Value::Mapping(map) = tree else { return Err("parent key is not a mapping".into()) };
    let key = Value::String(segments[0].clone());
    if segments.len() == 1 {
        map.insert(key, value);
        return Ok(());
    }
    let child = map.entry(key).or_insert_with(|| Value::Mapping(Default::default()));
    if child.is_null() {
        *child = Value::Mapping(Default::default());
    }
    set_path(child, &segments[1..], value)
}

/// Removes keys the service does not know (so deserialisation succeeds) and reports each one.
fn strip_unknown_keys(tree: &mut Value, known: &Value, prefix: &str, warnings: &mut Vec<String>) {
    let (Value::Mapping(map), Value::Mapping(known_map)) = (tree, known) else { return };
    let keys: Vec<Value> = map.keys().cloned().collect();
    for key in keys {
        let name = match &key {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
        };
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        match known_map.get(&key) {
            Some(known_child) => {
                if let Some(child) = map.get_mut(&key) {
                    // Maps in the defaults are sections; recurse only into sections.
                    if known_child.is_mapping() {
                        strip_unknown_keys(child, known_child, &full, warnings);
                    }
                }
            }
            None => {
                let removed = map.remove(&key);
                let legacy_section = LEGACY_KEYS.iter().any(|k| k.starts_with(&format!("{full}.")));
                if let (true, Some(Value::Mapping(children))) = (legacy_section, removed) {
                    let mut children = Value::Mapping(children);
                    strip_unknown_keys(&mut children, &Value::Mapping(Default::default()), &full, warnings);
                } else if LEGACY_KEYS.contains(&full.as_str()) {
                    warnings.push(format!(
                        "config key '{full}' is accepted for Pycelize compatibility but has no effect"
                    ));
                } else {
                    warnings.push(format!("unknown config key '{full}' ignored"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Loaded, ConfigError> {
        Config::from_yaml_with_env(text, "test", Vec::<(String, String)>::new())
    }

    #[test]
    fn empty_file_gives_defaults() {
        let loaded = load("").expect("defaults load");
        assert_eq!(loaded.config.app.port, 5050);
        assert!(!loaded.config.chat_workflows.enabled, "no chat_workflows section means the feature is off");
        assert_eq!(loaded.config.chat_workflows.websocket.port, 5051);
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn unknown_and_legacy_keys_are_warned_about() {
        let loaded = load("app:\n  colour: blue\nsql:\n  default_database: mysql\n").expect("loads");
        assert!(loaded.warnings.iter().any(|w| w.contains("'app.colour'")));
        assert!(loaded
            .warnings
            .iter()
            .any(|w| w.contains("'sql.default_database'") && w.contains("no effect")));
    }

    #[test]
    fn errors_name_the_key() {
        let err = load("app:\n  port: 70000\n").unwrap_err().to_string();
        assert!(err.contains("app.port"), "{err}");
        let err = load("chat_workflows:\n  partition:\n    strategy: random\n").unwrap_err().to_string();
        assert!(err.contains("chat_workflows.partition.strategy"), "{err}");
        let err = load("chat_workflows:\n  websocket:\n    ping_interval: 5\n    ping_timeout: 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ping_timeout"), "{err}");
        let err = load("chat_workflows:\n  max_connections: -3\n").unwrap_err().to_string();
        assert!(err.contains("chat_workflows.max_connections"), "{err}");
        for bad in ["[]", "[\"xlsx\"]", "[\".\"]", "[\".tar.gz\"]"] {
            let err = load(&format!("file:\n  allowed_extensions: {bad}\n")).unwrap_err().to_string();
            assert!(err.contains("file.allowed_extensions"), "{bad}: {err}");
        }
    }

    #[test]
    fn security_keys_are_validated() {
        let ws = |body: &str| load(&format!("chat_workflows:\n  websocket:\n{body}"));
        let err = ws("    allowed_origins: [\"localhost:3000\"]\n").unwrap_err().to_string();
        assert!(err.contains("allowed_origins"), "{err}");
        assert!(ws("    allowed_origins: [\"*\", \"https://*.example.com\", \"http://localhost:3000\"]\n")
            .is_ok());
        let err = ws("    auth:\n      protect_rest_api: true\n").unwrap_err().to_string();
        assert!(err.contains("protect_rest_api"), "{err}");
        let err = ws("    auth:\n      enabled: true\n      tokens: [\" x\"]\n").unwrap_err().to_string();
        assert!(err.contains("auth.tokens"), "{err}");
        let err = ws("    auth:\n      enabled: true\n      jwt_secret: \"\"\n").unwrap_err().to_string();
        assert!(err.contains("jwt_secret") || err.contains("websocket.auth"), "{err}");
        let err = ws("    auth:\n      enabled: true\n      tokens: [t]\n      timeout_seconds: 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout_seconds"), "{err}");
        let ok =
            ws("    auth:\n      enabled: true\n      tokens: [t]\n      protect_rest_api: true\n").unwrap();
        assert!(ok.config.chat_workflows.websocket.auth.protect_rest_api);
        assert!(!ok.config.chat_workflows.websocket.test_echo_route);
    }

    #[test]
    fn upload_guard_and_sweep_keys_are_validated() {
        let file = |body: &str| load(&format!("file:\n{body}"));
        for (body, key) in [
            ("  upload_rate_window_seconds: 0\n", "file.upload_rate_window_seconds"),
            ("  upload_rate_window_seconds: 4000\n", "file.upload_rate_window_seconds"),
            ("  temp_file_max_age_minutes: 0\n", "file.temp_file_max_age_minutes"),
            ("  temp_sweep_interval_seconds: 0\n", "file.temp_sweep_interval_seconds"),
        ] {
            let err = file(body).unwrap_err().to_string();
            assert!(err.contains(key), "{body}: {err}");
        }
        let ok = file("  upload_min_bytes_per_second: 0\n  max_concurrent_uploads_per_ip: 0\n").unwrap();
        assert_eq!(ok.config.file.upload_min_bytes_per_second, 0, "0 turns the minimum rate off");
        assert_eq!(load("").unwrap().config.file.max_concurrent_uploads_per_ip, 16);
    }

    #[test]
    fn environment_overrides_win() {
        let env = vec![
            ("OXCELIZE_APP__PORT".to_string(), "6001".to_string()),
            ("OXCELIZE_CHAT_WORKFLOWS__WEBSOCKET__HOST".to_string(), "0.0.0.0".to_string()),
            ("OXCELIZE_LOGGING__LEVEL".to_string(), "debug".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let loaded = Config::from_yaml_with_env("app:\n  port: 5050\n", "test", env).expect("loads");
        assert_eq!(loaded.config.app.port, 6001);
        assert_eq!(loaded.config.chat_workflows.websocket.host, "0.0.0.0");
        assert_eq!(loaded.config.logging.level, "debug");
    }

    #[test]
    fn cluster_and_storage_keys_are_validated() {
        let defaults = load("").unwrap().config;
        assert!(!defaults.cluster.enabled, "the embedded mode is the default");
        assert_eq!(defaults.storage.backend, StorageBackend::Local);
        assert_eq!(defaults.cluster.job_lease_seconds, 30);
        assert_eq!(defaults.cluster.max_job_attempts, 3);
        for (yaml, key) in [
            ("cluster:\n  job_lease_seconds: 1\n", "cluster.job_lease_seconds"),
            ("cluster:\n  max_job_attempts: 0\n", "cluster.max_job_attempts"),
            ("cluster:\n  postgres_pool_size: 1\n", "cluster.postgres_pool_size"),
            ("cluster:\n  enabled: true\n", "cluster.postgres_url"),
            ("cluster:\n  enabled: true\n  postgres_url: postgres://h/db\n", "cluster.redis_url"),
            (
                "cluster:\n  enabled: true\n  postgres_url: postgres://h/db\n  redis_url: redis://h/\n  \
                 postgres_pool_size: 11\n",
                "cluster.postgres_pool_size",
            ),
            ("storage:\n  backend: s3\n", "storage.s3.bucket"),
            ("storage:\n  backend: s3\n  s3:\n    bucket: b\n    endpoint: ftp://x\n", "storage.s3.endpoint"),
            (
                "storage:\n  backend: s3\n  s3:\n    bucket: b\n    endpoint: http://x\n",
                "storage.s3.allow_http",
            ),
            ("storage:\n  backend: nfs\n", "storage.backend"),
            (
                "storage:\n  backend: s3\n  s3:\n    bucket: b\n    access_key_id: k\n",
                "storage.s3.secret_access_key",
            ),
        ] {
            let err = load(yaml).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
        // The s3 backend is accepted, its secrets from the environment.
        // Verbatim, even when the text would read as another YAML value or as a comment.
        let env = vec![
            ("OXCELIZE_STORAGE__S3__ACCESS_KEY_ID".to_string(), "12345".to_string()),
            ("OXCELIZE_STORAGE__S3__SECRET_ACCESS_KEY".to_string(), "se/cr+et #tail".to_string()),
            ("OXCELIZE_STORAGE__S3__ALLOW_HTTP".to_string(), "true".to_string()),
        ];
        let s3 = Config::from_yaml_with_env("storage:\n  backend: s3\n  s3:\n    bucket: b\n", "test", env)
            .expect("the s3 backend loads");
        assert_eq!(s3.config.storage.s3.access_key_id, "12345");
        assert_eq!(s3.config.storage.s3.secret_access_key, "se/cr+et #tail");
        assert!(s3.config.storage.s3.allow_http);
        let env = vec![
            ("OXCELIZE_CLUSTER__NODE_ID".to_string(), "node-a".to_string()),
            // The test services' variables share the prefix but are no config keys.
            ("OXCELIZE_TEST_REDIS_URL".to_string(), "redis://127.0.0.1:1/".to_string()),
        ];
        let loaded = Config::from_yaml_with_env("", "test", env).expect("loads");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config.node_id(), "node-a");
        assert!(!defaults.node_id().is_empty());
    }
}
