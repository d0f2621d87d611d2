//! The `oxcelize` binary: parse arguments, load the config, start logging, run the App.

use std::path::PathBuf;
use std::process::ExitCode;

use oxcelize::config::Config;
use oxcelize::App;

const USAGE: &str = "usage: oxcelize [--config PATH]\n  --config PATH  configuration file (default: configs/application.yml)\n  --version      print the version\n";

fn parse_args() -> Result<Option<PathBuf>, String> {
    let mut config = PathBuf::from("configs/application.yml");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config = PathBuf::from(args.next().ok_or("--config needs a path")?),
            s if s.starts_with("--config=") => config = PathBuf::from(&s["--config=".len()..]),
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--version" | "-V" => {
                println!("oxcelize {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(config))
}

fn main() -> ExitCode {
    let path = match parse_args() {
        Ok(Some(path)) => path,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprint!("oxcelize: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let loaded = match Config::load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("oxcelize: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = oxcelize::logging::init(&loaded.config.logging) {
        eprintln!("oxcelize: cannot set up logging ({}): {e}", loaded.config.logging.file);
        return ExitCode::from(2);
    }
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcelize: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = loaded.config;
    let result = runtime.block_on(async move {
        let app = App::build(config.clone()).await?;
        let ws =
            app.ws_addr().map(|a| format!("ws://{a}/chat/{{chat_id}}")).unwrap_or_else(|| "disabled".into());
        let banner = format!(
            "{} {} (oxcelize {}) | REST http://{}{} | WebSocket {} | API docs http://{}/docs",
            config.app.name,
            config.app.version,
            env!("CARGO_PKG_VERSION"),
            app.rest_addr(),
            config.api.prefix,
            ws,
            app.rest_addr()
        );
        println!("{banner}");
        log::info!("{banner}");
        app.run_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("oxcelize stopped: {e}");
            eprintln!("oxcelize: {e}");
            ExitCode::FAILURE
        }
    }
}
