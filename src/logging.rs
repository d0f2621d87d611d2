//! Logging through `log` + `env_logger`, to stderr and to `logging.file` at once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use crate::config::{log_level_filter, LoggingConfig};

/// Writes every log line to stderr and, if configured, to the log file.
struct Tee {
    file: Option<Mutex<File>>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(buf)?;
        if let Some(file) = &self.file {
            if let Ok(mut f) = file.lock() {
                // A full disk must not take the service down; stderr still has the line.
                let _ = f.write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()?;
        if let Some(file) = &self.file {
            if let Ok(mut f) = file.lock() {
                let _ = f.flush();
            }
        }
        Ok(())
    }
}

/// Installs the global logger. `RUST_LOG`, when set, refines the configured level per module.
pub fn init(config: &LoggingConfig) -> std::io::Result<()> {
    let file = if config.file.trim().is_empty() {
        None
    } else {
        let path = std::path::Path::new(&config.file);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        Some(Mutex::new(OpenOptions::new().create(true).append(true).open(path)?))
    };
    let level = log_level_filter(&config.level).unwrap_or(log::LevelFilter::Info);
    let format = config.format.clone();
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        // Framework internals are noisy at debug level; our own request log covers requests.
        .filter_module("actix_server", log::LevelFilter::Warn.min(level))
        .filter_module("actix_http", log::LevelFilter::Warn.min(level))
        .filter_module("mio", log::LevelFilter::Warn.min(level))
        .parse_env("RUST_LOG")
        .target(env_logger::Target::Pipe(Box::new(Tee { file })))
        .format(move |buf, record| {
            let line = format
                .replace("{timestamp}", &crate::envelope::now_rfc3339())
                .replace("{level}", record.level().as_str())
                .replace("{target}", record.target())
                .replace("{message}", &record.args().to_string());
            writeln!(buf, "{line}")
        });
    builder.try_init().map_err(std::io::Error::other)
}
