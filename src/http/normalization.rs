//! `GET {prefix}/normalization/types` and `POST {prefix}/normalization/apply` (rest-api.md §7.4).

use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use crate::engine::StepControl;
use crate::envelope::{download_url, ApiResponse};
use crate::error::blocking;
use crate::http::routes::{errors, Endpoint};
use crate::http::tables::{output_target, spool_upload, workbook_style};
use crate::http::upload::Form;
use crate::http::{get, ApiResult};
use crate::ops::normalize::{normalization_types, normalize_spooled_to_xlsx, parse_steps, validate_steps};
use crate::table::names::base_name;
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::get("/normalization/types", || get().to(types), errors::NONE),
    Endpoint::post("/normalization/apply", || web::post().to(apply), errors::UPLOAD),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(types, apply))]
pub struct Doc;

#[utoipa::path(get, path = "/normalization/types", tag = "normalization", responses((status = 200, description = "Type name → description", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn types() -> ApiResponse {
    let types = normalization_types();
    let total = types.len() as u64;
    ApiResponse::ok("Normalization types retrieved successfully", types).with_total(total)
}

#[utoipa::path(post, path = "/normalization/apply", tag = "normalization", request_body(content = crate::http::schemas::NormalizationForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::NormalizationData>)))]
async fn apply(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let file = form.require_file("file")?;
    // Absent means the reference default `[]`, which is then reported as empty.
    let steps_json = form.json::<Value>("normalizations")?.unwrap_or_else(|| json!([]));
    let steps = parse_steps(&steps_json)?;
    let return_report = form.bool("return_report", false);

    let config = state.config.clone();
    let path = file.path().to_path_buf();
    let base = base_name(&file.client_name);
    let user_name = form.text("output_filename").map(str::to_string);
    let (name, report) = blocking(move || {
        let style = workbook_style(&config, &config.excel.default_sheet_name);
        let backup = config.normalization.backup_original;
        // Cell-by-cell rules stream one chunk at a time; whole-column rules hold the columns they touch
        // (see normalize_spooled_to_xlsx).
        let table = spool_upload(&path, None, &config)?;
        // Every step is checked before anything is transformed or written (422 listing the bad ones).
        validate_steps(&table.columns, &steps, backup)?;
        let target = output_target(&config, user_name.as_deref(), &[&base, "normalized"], "xlsx")?;
        let max_output = config.max_output_bytes();
        // Column statistics are only computed when the report is returned.
        let report = normalize_spooled_to_xlsx(
            table,
            &steps,
            backup,
            return_report,
            max_output,
            &target.path,
            &style,
            &StepControl::NONE,
        )?;
        Ok((target.name, report))
    })
    .await?;

    crate::http::files::publish_output(&state, &name).await?;
    let url = download_url(&req, &state.config, &name);
    if return_report {
        let data = json!({ "output_file": name, "report": report, "download_url": url });
        Ok(ApiResponse::ok("Normalization completed successfully", data))
    } else {
        Ok(ApiResponse::ok("Extracted Excel file generated successfully", json!({ "download_url": url })))
    }
}
