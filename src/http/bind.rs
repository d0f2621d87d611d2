//! Binding endpoints: `POST {prefix}/excel/bind-single-key`, `/excel/bind-multi-key` (rest-api.md
//! §7.2.5–7.2.6, key joins) and `POST {prefix}/files/bind`, `/files/bind/preview` (§7.7.2–7.7.3,
//! positional copy).

use std::path::PathBuf;

use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::StepControl;
use crate::envelope::{download_url, ApiResponse};
use crate::error::{blocking, ApiError};
use crate::http::routes::{errors, Endpoint};
use crate::http::tables::{output_target, read_upload, spool_upload, workbook_style};
use crate::http::upload::Form;
use crate::http::ApiResult;
use crate::ops::bind::{
    bind_positional, bind_preview, bind_spooled_to_file, parse_column_list, BindKeys, BindOutcome,
};
use crate::ops::params::{mapping_from_json, ColumnMapping};
use crate::table::names::base_name;
use crate::table::write::write_table_xlsx;
use crate::table::Table;
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::post("/excel/bind-single-key", || web::post().to(bind_single), errors::UPLOAD),
    Endpoint::post("/excel/bind-multi-key", || web::post().to(bind_multi), errors::UPLOAD),
    Endpoint::post("/files/bind", || web::post().to(files_bind), errors::UPLOAD),
    Endpoint::post("/files/bind/preview", || web::post().to(files_bind_preview), errors::UPLOAD),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(bind_single, bind_multi, files_bind, files_bind_preview))]
pub struct Doc;

/// Reads both uploaded workbooks (first sheets), the first one first so its errors win.
fn read_pair(
    first: &std::path::Path,
    second: &std::path::Path,
    config: &Config,
) -> Result<(Table, Table), ApiError> {
    let a = read_upload(first, None, config)?.table;
    let b = read_upload(second, None, config)?.table;
    Ok((a, b))
}

/// Writes the bound table and returns its output name.
fn write_bound(
    config: &Config,
    outcome: &BindOutcome,
    user_name: Option<&str>,
    parts: &[&str],
) -> Result<String, ApiError> {
    let target = output_target(config, user_name, parts, "xlsx")?;
    write_table_xlsx(
        &target.path,
        &outcome.table,
        &workbook_style(config, &config.excel.default_sheet_name),
    )?;
    Ok(target.name)
}

/// `{"download_url": …}` plus the statistics object's fields (IMPROVE, additive).
fn bound_data(req: &HttpRequest, config: &Config, name: &str, stats: Value) -> Value {
    let mut data = match stats {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    data.insert("download_url".into(), Value::String(download_url(req, config, name)));
    Value::Object(data)
}

/// A JSON-array field of column names with the reference default `[]`.
fn column_list(form: &Form, field: &str) -> Result<Vec<String>, ApiError> {
    let invalid = format!("{field} must be a valid JSON array");
    Ok(parse_column_list(form.text_or(field, "[]"), field, &invalid)?)
}

struct Uploads {
    first: PathBuf,
    second: PathBuf,
    first_name: String,
    second_name: String,
}

fn two_files(form: &Form, first: &str, second: &str) -> Result<Uploads, ApiError> {
    let a = form.require_file(first)?;
    let b = form.require_file(second)?;
    Ok(Uploads {
        first: a.path().to_path_buf(),
        second: b.path().to_path_buf(),
        first_name: a.client_name.clone(),
        second_name: b.client_name.clone(),
    })
}

#[utoipa::path(post, path = "/excel/bind-single-key", tag = "bind", request_body(content = crate::http::schemas::BindSingleForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::BindData>)))]
async fn bind_single(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let files = two_files(&form, "source_file", "bind_file")?;
    let key = form.text_or("comparison_column", "").to_string();
    if key.is_empty() {
        return Err(ApiError::validation("comparison_column parameter is required")
            .with_details(json!({ "field": "comparison_column" })));
    }
    let bind_columns = column_list(&form, "bind_columns")?;
    bind_by_keys(req, state, &form, files, BindKeys::Single(key), bind_columns).await
}

#[utoipa::path(post, path = "/excel/bind-multi-key", tag = "bind", request_body(content = crate::http::schemas::BindMultiForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::BindData>)))]
async fn bind_multi(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let files = two_files(&form, "source_file", "bind_file")?;
    let keys = column_list(&form, "comparison_columns")?;
    let bind_columns = column_list(&form, "bind_columns")?;
    if keys.is_empty() {
        return Err(ApiError::validation("At least one comparison column must be specified")
            .with_details(json!({ "field": "comparison_columns" })));
    }
    bind_by_keys(req, state, &form, files, BindKeys::Multi(keys), bind_columns).await
}

/// The shared tail of the single- and multi-key binds: checks the bind columns, binds, writes the output.
async fn bind_by_keys(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: &Form,
    files: Uploads,
    keys: BindKeys,
    bind_columns: Vec<String>,
) -> ApiResult {
    if bind_columns.is_empty() {
        return Err(ApiError::validation("At least one bind column must be specified")
            .with_details(json!({ "field": "bind_columns" })));
    }
    let user_name = form.text("output_filename").map(str::to_string);
    let config = state.config.clone();
    let (name, stats) = blocking(move || {
        // Both files spooled, the first one first so its errors win; the bind holds only its lookup index.
        let source = spool_upload(&files.first, None, &config)?;
        let bind = spool_upload(&files.second, None, &config)?;
        let suffix = match &keys {
            BindKeys::Single(_) => "bound_single",
            BindKeys::Multi(_) => "bound_multi",
        };
        let base = base_name(&files.first_name);
        let target = output_target(&config, user_name.as_deref(), &[&base, suffix], "xlsx")?;
        let style = workbook_style(&config, &config.excel.default_sheet_name);
        let none = StepControl::NONE;
        let stats = bind_spooled_to_file(source, bind, &keys, &bind_columns, &target.path, &style, &none)?;
        Ok((target.name, stats))
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    Ok(ApiResponse::ok("Excel binding completed successfully", bound_data(&req, &state.config, &name, stats)))
}

/// `column_mapping` of the positional bind: target column → source column.
fn positional_mapping(form: &Form) -> Result<ColumnMapping, ApiError> {
    match form.json::<Value>("column_mapping")? {
        Some(v) => Ok(mapping_from_json(&v, "column_mapping")?),
        None => Ok(Vec::new()),
    }
}

#[utoipa::path(post, path = "/files/bind", tag = "bind", request_body(content = crate::http::schemas::FilesBindForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::BindData>)))]
async fn files_bind(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let files = two_files(&form, "source_file", "target_file")?;
    let mapping = positional_mapping(&form)?;
    if mapping.is_empty() {
        return Err(ApiError::validation("column_mapping is required")
            .with_details(json!({ "field": "column_mapping" })));
    }
    let user_name = form.text("output_filename").map(str::to_string);
    let config = state.config.clone();
    let (name, stats) = blocking(move || {
        let (source, target) = read_pair(&files.first, &files.second, &config)?;
        let outcome = bind_positional(&source, &target, &mapping)?;
        let base = base_name(&files.second_name);
        let name = write_bound(&config, &outcome, user_name.as_deref(), &[&base, "bound"])?;
        Ok((name, outcome.stats))
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    Ok(ApiResponse::ok("Converted to Excel file successfully", bound_data(&req, &state.config, &name, stats)))
}

#[utoipa::path(post, path = "/files/bind/preview", tag = "bind", request_body(content = crate::http::schemas::FilesBindPreviewForm, content_type = "multipart/form-data"), responses((status = 200, description = "Preview of the binding", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn files_bind_preview(state: web::Data<AppState>, form: Form) -> ApiResult {
    let files = two_files(&form, "source_file", "target_file")?;
    let mapping = positional_mapping(&form)?;
    let config = state.config.clone();
    let data = blocking(move || {
        let (source, target) = read_pair(&files.first, &files.second, &config)?;
        Ok(bind_preview(&source, &target, &mapping))
    })
    .await?;
    Ok(ApiResponse::ok("Binding preview generated", data))
}
