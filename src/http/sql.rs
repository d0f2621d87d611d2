//! `GET {prefix}/sql/databases`, `POST {prefix}/sql/generate`, `/sql/generate-to-text` and
//! `/sql/generate-custom-to-text` (rest-api.md §7.5). The sheet is spooled to disk and the script streamed
//! from it row by row into the output file, so memory does not grow with the row count.

use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use crate::envelope::{download_url, ApiResponse};
use crate::error::{blocking, ApiError};
use crate::http::routes::{errors, Endpoint};
use crate::http::tables::{output_target, spool_upload, write_text_output};
use crate::http::upload::Form;
use crate::http::{get, ApiResult};
use crate::ops::clock::now_iso;
use crate::ops::params::{mapping_from_json, string_list_from_json, ColumnMapping};
use crate::ops::sql::{
    generate_standard_sql_rows, select_spooled_for_generation, write_standard_sql_rows, AutoIncrement,
    StandardSqlGenerator, StandardSqlRequest, SUPPORTED_DATABASES,
};
use crate::ops::sql_template::{strip_outer_quotes, write_custom_sql_rows, CustomSqlGenerator};
use crate::table::names::base_name;
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::get("/sql/databases", || get().to(databases), errors::NONE),
    Endpoint::post("/sql/generate", || web::post().to(generate), errors::UPLOAD),
    Endpoint::post("/sql/generate-to-text", || web::post().to(generate_to_text), errors::UPLOAD),
    Endpoint::post(
        "/sql/generate-custom-to-text",
        || web::post().to(generate_custom_to_text),
        errors::UPLOAD,
    ),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(databases, generate, generate_to_text, generate_custom_to_text))]
pub struct Doc;

#[utoipa::path(get, path = "/sql/databases", tag = "sql", responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::DatabasesData>)))]
async fn databases() -> ApiResponse {
    ApiResponse::ok("Supported databases retrieved successfully", json!({ "databases": SUPPORTED_DATABASES }))
}

/// `columns`: optional JSON array of strings (empty text = none).
fn columns_field(form: &Form) -> Result<Vec<String>, ApiError> {
    match form.json::<Value>("columns")? {
        Some(v) => Ok(string_list_from_json(&v, "columns")?),
        None => Ok(Vec::new()),
    }
}

/// `column_mapping`: required non-empty JSON object of strings.
fn required_mapping(form: &Form) -> Result<ColumnMapping, ApiError> {
    let mapping = match form.json::<Value>("column_mapping")? {
        Some(v) => mapping_from_json(&v, "column_mapping")?,
        None => Vec::new(),
    };
    if mapping.is_empty() {
        return Err(ApiError::validation("column_mapping is required")
            .with_details(json!({ "field": "column_mapping" })));
    }
    Ok(mapping)
}

fn required_text<'a>(form: &'a Form, field: &str) -> Result<&'a str, ApiError> {
    match form.text(field) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => {
            Err(ApiError::validation(format!("{field} is required")).with_details(json!({ "field": field })))
        }
    }
}

/// `batch_size` (IMPROVE): an integer ≥ 1 when given; it has no effect on the output (ops §9.1).
fn check_batch_size(form: &Form) -> Result<(), ApiError> {
    if form.text("batch_size").is_some_and(|v| v.trim().is_empty()) {
        return Ok(());
    }
    match form.int("batch_size")? {
        Some(n) if n < 1 => Err(ApiError::validation(format!("batch_size must be at least 1, got {n}"))
            .with_details(json!({ "field": "batch_size" }))),
        _ => Ok(()),
    }
}

fn auto_increment_field(form: &Form) -> Result<AutoIncrement, ApiError> {
    Ok(AutoIncrement::from_json(form.json::<Value>("auto_increment")?.as_ref())?)
}

/// `database_type`, default (and empty) → `postgresql`; kept as sent for the echo.
fn database_type(form: &Form) -> String {
    match form.text("database_type") {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => "postgresql".to_string(),
    }
}

/// Dialect, increment type and identifiers are checked before the file is read (IMPROVE: 422, not a 400
/// after reading).
fn prevalidate(req: &StandardSqlRequest) -> Result<(), ApiError> {
    Ok(StandardSqlGenerator::check_request(req)?)
}

#[utoipa::path(post, path = "/sql/generate", tag = "sql", request_body(content = crate::http::schemas::SqlForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::SqlData>)))]
async fn generate(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let file = form.require_file("file")?;
    let table_name = required_text(&form, "table_name")?.to_string();
    let column_mapping = required_mapping(&form)?;
    check_batch_size(&form)?;
    let auto_increment = auto_increment_field(&form)?;
    let template = form.text("template").filter(|t| !t.is_empty()).map(str::to_string);
    let sql_req = StandardSqlRequest {
        table_name,
        column_mapping,
        database_type: database_type(&form),
        include_transaction: form.bool("include_transaction", true),
        auto_increment,
        template,
    };
    prevalidate(&sql_req)?;
    let return_file = form.bool("return_file", false);

    let config = state.config.clone();
    let path = file.path().to_path_buf();
    let base = base_name(&file.client_name);
    if return_file {
        let name = blocking(move || {
            let mut table = spool_upload(&path, None, &config)?;
            // Built before the output exists so generation errors leave nothing behind.
            StandardSqlGenerator::new(&table.columns, &sql_req)?;
            let target = output_target(&config, None, &[&base, "sql"], "sql")?;
            let generated_at = now_iso();
            let count = table.rows.len();
            write_text_output(&config, &target, |out| {
                let rows = &mut table.rows.reader()?;
                write_standard_sql_rows(&table.columns, rows, count, &sql_req, &generated_at, out)
            })?;
            Ok(target.name)
        })
        .await?;
        crate::http::files::publish_output(&state, &name).await?;
        let url = download_url(&req, &state.config, &name);
        return Ok(ApiResponse::ok(
            "Generate Standard SQL file successfully",
            json!({ "download_url": url }),
        ));
    }

    let (sql_req, rows, statements) = blocking(move || {
        // The statements are the answer, so they are held; the sheet is not.
        let mut table = spool_upload(&path, None, &config)?;
        let count = table.rows.len();
        let rows = &mut table.rows.reader()?;
        let statements = generate_standard_sql_rows(&table.columns, rows, count, &sql_req, &now_iso())?;
        Ok((sql_req, count, statements))
    })
    .await?;
    let total = statements.len() as u64;
    let data = json!({
        "success": true,
        "table_name": sql_req.table_name,
        "database_type": sql_req.database_type,
        "total_rows": rows,
        "total_statements": total,
        "statements": statements,
        "generated_at": now_iso(),
    });
    Ok(ApiResponse::ok("SQL generated successfully", data).with_total(total))
}

#[utoipa::path(post, path = "/sql/generate-to-text", tag = "sql", request_body(content = crate::http::schemas::SqlForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::DownloadData>)))]
async fn generate_to_text(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let file = form.require_file("file")?;
    let columns = columns_field(&form)?;
    let table_name = required_text(&form, "table_name")?.to_string();
    let column_mapping = required_mapping(&form)?;
    check_batch_size(&form)?;
    let auto_increment = auto_increment_field(&form)?;
    let sql_req = StandardSqlRequest {
        table_name,
        column_mapping,
        database_type: database_type(&form),
        include_transaction: true,
        auto_increment,
        template: None,
    };
    prevalidate(&sql_req)?;
    let remove_duplicates = form.bool("remove_duplicates", false);

    let config = state.config.clone();
    let path = file.path().to_path_buf();
    let name = blocking(move || {
        let table = spool_upload(&path, None, &config)?;
        let mut table = select_spooled_for_generation(table, &columns, remove_duplicates)?;
        // Built before the output exists so generation errors leave nothing behind.
        StandardSqlGenerator::new(&table.columns, &sql_req)?;
        let target = output_target(&config, None, &["sql_statements"], "txt")?;
        let generated_at = now_iso();
        let count = table.rows.len();
        write_text_output(&config, &target, |out| {
            let rows = &mut table.rows.reader()?;
            write_standard_sql_rows(&table.columns, rows, count, &sql_req, &generated_at, out)
        })?;
        Ok(target.name)
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    let url = download_url(&req, &state.config, &name);
    Ok(ApiResponse::ok("SQL text file generated successfully", json!({ "download_url": url })))
}

#[utoipa::path(post, path = "/sql/generate-custom-to-text", tag = "sql", request_body(content = crate::http::schemas::CustomSqlForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::DownloadData>)))]
async fn generate_custom_to_text(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let file = form.require_file("file")?;
    let columns = columns_field(&form)?;
    let template = strip_outer_quotes(required_text(&form, "template")?).to_string();
    let mapping = required_mapping(&form)?;
    let auto_increment = auto_increment_field(&form)?;
    // IMPROVE: no sheet name means the first sheet, whatever it is called.
    let sheet = form.text("sheet_name").filter(|s| !s.is_empty()).map(str::to_string);
    let remove_duplicates = form.bool("remove_duplicates", false);

    let config = state.config.clone();
    let path = file.path().to_path_buf();
    let name = blocking(move || {
        let table = spool_upload(&path, sheet.as_deref(), &config)?;
        let mut table = select_spooled_for_generation(table, &columns, remove_duplicates)?;
        let mut generator = CustomSqlGenerator::new(&template, &mapping, &table.columns, &auto_increment)?;
        let target = output_target(&config, None, &["custom_sql"], "txt")?;
        let generated_at = now_iso();
        let count = table.rows.len();
        write_text_output(&config, &target, |out| {
            write_custom_sql_rows(&mut generator, &mut table.rows.reader()?, count, &generated_at, out)
        })?;
        Ok(target.name)
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    let url = download_url(&req, &state.config, &name);
    Ok(ApiResponse::ok("Custom SQL text file generated successfully", json!({ "download_url": url })))
}
