//! `GET /openapi.json` and `GET /docs`: the document lists exactly the routes the app serves (walked from
//! the app's route tables and probed live), and live answers, successes and errors, match the schema the
//! document gives for their path, method and status.

use std::collections::BTreeSet;

use oxcelize::http::routes::{self, Verb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{spawn_app, spawn_app_with, TestApp};
use crate::fixtures::{csv_text, form, xlsx, PEOPLE};

async fn document(app: &TestApp) -> Value {
    let res = app.client.get(format!("{}/openapi.json", app.base)).send().await.expect("request");
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    res.json().await.expect("JSON document")
}

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "options", "head", "patch", "trace"] {
            if item.get(method).is_some() {
                out.insert((path.clone(), method.to_string()));
            }
        }
    }
    out
}

fn served_operations(app: &TestApp) -> BTreeSet<(String, String)> {
    routes::served(&app.config)
        .iter()
        .map(|r| (r.path.clone(), r.endpoint.verb.openapi_key().to_string()))
        .collect()
}

/// A value for a path parameter that reaches the handler (a real asset where the handler serves files).
fn sample_path(path: &str) -> String {
    path.replace("{asset}", "console.css")
        .replace("{file}", "swagger-ui.css")
        .replace("{chat_id}", "no-such-chat")
        .replace("{job_id}", "no-such-job")
        .replace("{filename}", "no-such-file.xlsx")
}

#[tokio::test]
async fn the_document_lists_exactly_the_served_routes() {
    for serve_on_rest_port in [true, false] {
        let app = spawn_app_with(|c| {
            c.api.prefix = "/svc/v2".into();
            c.chat_workflows.websocket.serve_on_rest_port = serve_on_rest_port;
        })
        .await;
        let doc = document(&app).await;
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        let documented = documented_operations(&doc);
        let served = served_operations(&app);
        let missing: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(unserved.is_empty(), "documented but not served: {unserved:?}");
        assert!(documented.contains(&("/svc/v2/excel/info".into(), "post".into())), "prefix applied");
        assert!(documented.contains(&("/metrics".into(), "get".into())));
        assert_eq!(
            documented.contains(&("/svc/v2/ws/chat/{chat_id}".into(), "get".into())),
            serve_on_rest_port
        );
        app.stop().await;
    }
}

/// Every route of the tables is really registered: it reaches a handler instead of the generic
/// `Resource not found` / `Method not allowed` answers (both have `data: null`).
#[tokio::test]
async fn every_route_of_the_table_reaches_its_handler() {
    let app = spawn_app().await;
    let aliases: Vec<&str> = oxcelize::ws::server::REST_ALIASES.iter().map(|e| e.path).collect();
    let mut probed = 0;
    for route in routes::served(&app.config) {
        if aliases.contains(&route.endpoint.path) {
            continue; // upgrade-only routes: covered by the WebSocket tests
        }
        let method = match route.endpoint.verb {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        };
        let url = format!("{}{}", app.base, sample_path(&route.path));
        let res = app
            .client
            .request(method.clone(), &url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let generic = matches!(status, 404 | 405) && body.get("data") == Some(&Value::Null);
        assert!(!generic, "{method} {} is in the route table but not served: {status} {body}", route.path);
        probed += 1;
    }
    assert!(probed > 40, "only {probed} routes probed");
    app.stop().await;
}

/// Validates `body` against the documented JSON schema of `path`/`method`/`status`.
fn assert_documented(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let response = &operation["responses"][status.to_string()];
    assert!(response.is_object(), "{method} {path}: status {status} is not documented: {body}");
    let escaped = path.replace('~', "~0").replace('/', "~1").replace('{', "%7B").replace('}', "%7D");
    let mut schema = doc.clone();
    schema["$ref"] =
        json!(format!("#/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema"));
    let validator = jsonschema::draft202012::new(&schema).expect("the document's schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{method} {path} {status} does not match its schema: {errors:?}\n{body}");
}

/// Sends a request whose answer must be a JSON envelope; returns its status and body.
async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let res = request.send().await.expect("request");
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("JSON answer");
    assert_eq!(body["status_code"], status);
    (status, body)
}

#[tokio::test]
async fn live_answers_match_the_documented_schemas() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let api = |p: &str| format!("{}{p}", app.api);
    let doc_path = |p: &str| format!("{}{p}", app.config.api.prefix);
    let people = || xlsx(PEOPLE);
    let c = &app.client;

    let mut checked = Vec::new();
    let mut check = |path: &str, method: &str, status: u16, expected: u16, body: Value| {
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert_documented(&doc, path, method, status, &body);
        checked.push(format!("{method} {path} {status}"));
    };

    for p in ["/health", "/health/ready", "/sql/databases", "/normalization/types", "/chat/bot/operations"] {
        let (s, b) = call(c.get(api(p))).await;
        check(&doc_path(p), "get", s, 200, b);
    }
    let (s, b) = call(c.post(api("/excel/info")).multipart(form("people.xlsx", people(), &[]))).await;
    check(&doc_path("/excel/info"), "post", s, 200, b);
    let csv = csv_text(PEOPLE);
    let (s, b) = call(c.post(api("/csv/info")).multipart(form("people.csv", csv.clone(), &[]))).await;
    check(&doc_path("/csv/info"), "post", s, 200, b);
    let fields = [("columns", r#"["Name","Age"]"#)];
    let (s, b) =
        call(c.post(api("/excel/extract-columns")).multipart(form("p.xlsx", people(), &fields))).await;
    check(&doc_path("/excel/extract-columns"), "post", s, 200, b);
    let (s, b) = call(c.post(api("/json/generate")).multipart(form("p.xlsx", people(), &[]))).await;
    check(&doc_path("/json/generate"), "post", s, 200, b);
    let fields = [("table_name", "people"), ("column_mapping", r#"{"name":"Name"}"#)];
    let (s, b) = call(c.post(api("/sql/generate")).multipart(form("p.xlsx", people(), &fields))).await;
    check(&doc_path("/sql/generate"), "post", s, 200, b);

    // Errors: each class the envelope documents.
    let bad_columns = [("columns", r#"["Nope"]"#)];
    let (s, b) =
        call(c.post(api("/excel/extract-columns")).multipart(form("p.xlsx", people(), &bad_columns))).await;
    check(&doc_path("/excel/extract-columns"), "post", s, 422, b);
    let (s, b) = call(c.post(api("/excel/info")).multipart(form("notes.txt", b"x".to_vec(), &[]))).await;
    check(&doc_path("/excel/info"), "post", s, 415, b);
    let (s, b) = call(c.post(api("/excel/info")).multipart(form(
        "broken.xlsx",
        b"PK\x03\x04 truncated workbook".to_vec(),
        &[],
    )))
    .await;
    check(&doc_path("/excel/info"), "post", s, 400, b);
    let (s, b) = call(c.get(api("/files/downloads/missing.xlsx"))).await;
    check(&doc_path("/files/downloads/{filename}"), "get", s, 404, b);

    // Chat workflows and the bot.
    let (s, b) = call(c.post(api("/chat/workflows"))).await;
    let chat_id = b["data"]["chat_id"].as_str().expect("chat_id").to_string();
    check(&doc_path("/chat/workflows"), "post", s, 201, b);
    let (s, b) = call(c.get(api("/chat/workflows"))).await;
    check(&doc_path("/chat/workflows"), "get", s, 200, b);
    let (s, b) = call(c.get(api(&format!("/chat/workflows/{chat_id}")))).await;
    check(&doc_path("/chat/workflows/{chat_id}"), "get", s, 200, b);
    let (s, b) = call(c.get(api(&format!("/chat/workflows/{chat_id}/jobs")))).await;
    check(&doc_path("/chat/workflows/{chat_id}/jobs"), "get", s, 200, b);
    let (s, b) = call(c.get(api(&format!("/chat/workflows/{chat_id}/events")))).await;
    check(&doc_path("/chat/workflows/{chat_id}/events"), "get", s, 200, b);
    let (s, b) = call(c.get(api("/chat/workflows/no-such-chat"))).await;
    check(&doc_path("/chat/workflows/{chat_id}"), "get", s, 404, b);
    let (s, b) = call(c.get(api("/chat/workflows?limit=0"))).await;
    check(&doc_path("/chat/workflows"), "get", s, 422, b);
    let (s, b) = call(c.delete(api(&format!("/chat/workflows/{chat_id}")))).await;
    check(&doc_path("/chat/workflows/{chat_id}"), "delete", s, 200, b);
    let (s, b) = call(c.post(api("/chat/bot/conversations"))).await;
    let bot_id = b["data"]["chat_id"].as_str().expect("bot chat_id").to_string();
    check(&doc_path("/chat/bot/conversations"), "post", s, 201, b);
    let message = json!({"message": "hello"});
    let (s, b) = call(c.post(api(&format!("/chat/bot/conversations/{bot_id}/message"))).json(&message)).await;
    check(&doc_path("/chat/bot/conversations/{chat_id}/message"), "post", s, 200, b);
    let (s, b) =
        call(c.post(api(&format!("/chat/bot/conversations/{bot_id}/message"))).json(&json!({}))).await;
    check(&doc_path("/chat/bot/conversations/{chat_id}/message"), "post", s, 422, b);

    // A bot rejection is an error envelope like any other (`error_class` beside `error_type: Error`).
    let confirm = json!({"confirmed": true});
    let (s, b) = call(c.post(api(&format!("/chat/bot/conversations/{bot_id}/confirm"))).json(&confirm)).await;
    assert_eq!(b["data"]["error_class"], "BadRequest", "{b}");
    check(&doc_path("/chat/bot/conversations/{chat_id}/confirm"), "post", s, 400, b);

    assert!(checked.len() >= 25, "{checked:?}");
    app.stop().await;
}

/// With `auth.protect_rest_api`, the 401 answer is documented for API routes and not for health.
#[tokio::test]
async fn token_errors_are_documented_where_the_token_is_asked() {
    let app = spawn_app_with(|c| {
        let auth = &mut c.chat_workflows.websocket.auth;
        auth.enabled = true;
        auth.protect_rest_api = true;
        auth.tokens = vec!["secret-token".into()];
    })
    .await;
    let doc = document(&app).await;
    let prefix = &app.config.api.prefix;
    let (s, b) = call(app.client.get(format!("{}/sql/databases", app.api))).await;
    assert_eq!(s, 401);
    assert_documented(&doc, &format!("{prefix}/sql/databases"), "get", 401, &b);
    assert!(doc["paths"][format!("{prefix}/health")]["get"]["responses"]["401"].is_null());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.stop().await;
}

/// Swagger UI is served from the binary and points at the document.
#[tokio::test]
async fn docs_page_serves_swagger_ui_for_the_document() {
    let app = spawn_app().await;
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = no_redirect.get(format!("{}/docs", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/docs/");
    let res = app.client.get(format!("{}/docs/", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    let init = app.client.get(format!("{}/docs/swagger-initializer.js", app.base)).send().await.unwrap();
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    let bundle = app.client.get(format!("{}/docs/swagger-ui-bundle.js", app.base)).send().await.unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.unwrap().len() > 100_000, "the bundle is embedded, not fetched");
    let (s, b) = call(app.client.get(format!("{}/docs/no-such-file.js", app.base))).await;
    assert_eq!(s, 404);
    assert_documented(&document(&app).await, "/docs/{file}", "get", 404, &b);
    app.stop().await;
}
