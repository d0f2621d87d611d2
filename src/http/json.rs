//! `POST {prefix}/json/generate` and `POST {prefix}/json/generate-with-template` (rest-api.md §7.6). The
//! sheet is spooled to disk and the JSON document streamed from it object by object into the output file.

use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use crate::envelope::{download_url, ApiResponse};
use crate::error::{blocking, ApiError};
use crate::http::routes::{errors, Endpoint};
use crate::http::tables::{output_target, spool_upload, write_text_output};
use crate::http::upload::Form;
use crate::http::ApiResult;
use crate::ops::json_gen::{plan_json, write_json_rows, JsonGenRequest, JsonWriteSummary, NullHandling};
use crate::ops::json_template::{parse_template_text, write_template_rows, AggregationMode, JsonTemplate};
use crate::ops::params::{mapping_from_json, string_list_from_json};
use crate::table::names::base_name;
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::post("/json/generate", || web::post().to(generate), errors::UPLOAD),
    Endpoint::post("/json/generate-with-template", || web::post().to(generate_with_template), errors::UPLOAD),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(generate, generate_with_template))]
pub struct Doc;

fn summary_data(req: &HttpRequest, state: &AppState, name: &str, summary: JsonWriteSummary) -> Value {
    json!({
        "download_url": download_url(req, &state.config, name),
        "total_records": summary.total_records,
        "file_size": summary.bytes_written,
    })
}

#[utoipa::path(post, path = "/json/generate", tag = "json", request_body(content = crate::http::schemas::JsonGenerateForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::JsonFileData>)))]
async fn generate(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let file = form.require_file("file")?;
    let columns = match form.json::<Value>("columns")? {
        Some(v) => string_list_from_json(&v, "columns")?,
        None => Vec::new(),
    };
    let column_mapping = match form.json::<Value>("column_mapping")? {
        Some(v) => mapping_from_json(&v, "column_mapping")?,
        None => Vec::new(),
    };
    let null_handling = NullHandling::parse(form.text_or("null_handling", "include"))?;
    let json_req = JsonGenRequest {
        columns,
        column_mapping,
        null_handling,
        array_wrapper: form.bool("array_wrapper", true),
        pretty_print: form.bool("pretty_print", true),
    };

    let config = state.config.clone();
    let path = file.path().to_path_buf();
    let base = base_name(&file.client_name);
    let user_name = form.text("output_filename").map(str::to_string);
    let (name, summary) = blocking(move || {
        let mut table = spool_upload(&path, None, &config)?;
        let count = table.rows.len();
        let plan = plan_json(&table.columns, count, &json_req)?;
        let target = output_target(&config, user_name.as_deref(), &[&base, "generated"], "json")?;
        let summary = write_text_output(&config, &target, |out| {
            write_json_rows(&plan, &mut table.rows.reader()?, count, out)
        })?;
        Ok((target.name, summary))
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    Ok(ApiResponse::ok("JSON file generated successfully", summary_data(&req, &state, &name, summary)))
}

fn required(form: &Form, field: &str) -> Result<String, ApiError> {
    match form.text(field) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => {
            Err(ApiError::validation(format!("{field} is required")).with_details(json!({ "field": field })))
        }
    }
}

#[utoipa::path(post, path = "/json/generate-with-template", tag = "json", request_body(content = crate::http::schemas::JsonTemplateForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::JsonFileData>)))]
async fn generate_with_template(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let file = form.require_file("file")?;
    let template_text = required(&form, "template")?;
    let mapping_text = required(&form, "column_mapping")?;
    let template = parse_template_text(&template_text)?;
    let mapping_json: Value = serde_json::from_str(&mapping_text).map_err(|e| {
        ApiError::validation(format!("Invalid column_mapping JSON: {e}"))
            .with_details(json!({ "field": "column_mapping" }))
    })?;
    let mapping = mapping_from_json(&mapping_json, "column_mapping")?;
    if mapping.is_empty() {
        return Err(ApiError::validation("column_mapping cannot be empty")
            .with_details(json!({ "field": "column_mapping" })));
    }
    let mode = AggregationMode::parse(form.text_or("aggregation_mode", "array"))?;
    let pretty = form.bool("pretty_print", true);

    let config = state.config.clone();
    let path = file.path().to_path_buf();
    let base = base_name(&file.client_name);
    let user_name = form.text("output_filename").map(str::to_string);
    let (name, summary) = blocking(move || {
        let mut table = spool_upload(&path, None, &config)?;
        let count = table.rows.len();
        let compiled = JsonTemplate::compile(&template, &mapping, &table.columns)?;
        let target = output_target(&config, user_name.as_deref(), &[&base, "generated_template"], "json")?;
        let summary = write_text_output(&config, &target, |out| {
            write_template_rows(&compiled, mode, &mut table.rows.reader()?, count, pretty, out)
        })?;
        Ok((target.name, summary))
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    Ok(ApiResponse::ok(
        "JSON file generated successfully with template",
        summary_data(&req, &state, &name, summary),
    ))
}
