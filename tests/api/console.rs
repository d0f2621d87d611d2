//! `GET /console`: the embedded page, its assets and the settings it is served with. What the page does in a
//! browser is tested by `tests/browser/` (headless Chromium).

use serde_json::Value;

use crate::common::{envelope, spawn_app, spawn_app_with};

/// The JSON settings block the page is served with.
fn settings(page: &str) -> Value {
    let start =
        page.find(r#"<script id="console-settings" type="application/json">"#).expect("settings block");
    let rest = &page[start..];
    let json = &rest[rest.find('>').expect("tag end") + 1..rest.find("</script>").expect("block end")];
    serde_json::from_str(json).expect("settings are JSON")
}

#[tokio::test]
async fn console_page_is_served_outside_the_api_prefix_with_its_settings() {
    let app = spawn_app().await;
    for path in ["/console", "/console/"] {
        let res = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let page = res.text().await.unwrap();
        assert!(page.contains(r#"<script src="/console/console.js""#));
        assert!(!page.contains("{{CONSOLE_SETTINGS}}"));
        let settings = settings(&page);
        assert_eq!(settings["api_prefix"], "/api/v1");
        assert_eq!(settings["chat_workflows_enabled"], true);
        assert_eq!(settings["websocket"]["same_origin"], true);
        assert_eq!(settings["websocket"]["max_subscriptions"], 20);
        assert_eq!(settings["auth"], serde_json::json!({"rest": false, "websocket": false}));
    }
    // No resource outside this origin: no CDN, no external fonts.
    for asset in ["console.js", "console.css"] {
        let res = app.client.get(format!("{}/console/{asset}", app.base)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{asset}");
        let body = res.text().await.unwrap();
        assert!(!body.contains("https://") && !body.contains("@import"), "{asset} loads something external");
    }
    let res = app.client.head(format!("{}/console", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn console_assets_have_their_content_types_and_unknown_ones_are_404() {
    let app = spawn_app().await;
    for (asset, kind) in
        [("console.js", "text/javascript; charset=utf-8"), ("console.css", "text/css; charset=utf-8")]
    {
        let res = app.client.get(format!("{}/console/{asset}", app.base)).send().await.unwrap();
        assert_eq!(res.headers()["content-type"], kind, "{asset}");
    }
    for path in ["/console/index.html", "/console/..%2fCargo.toml", "/console/console.js.map"] {
        let (status, body) =
            envelope(app.client.get(format!("{}{path}", app.base)).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["status_code"], 404);
        assert_eq!(body["message"], "Resource not found");
    }
    let (status, body) =
        envelope(app.client.post(format!("{}/console", app.base)).send().await.unwrap()).await;
    assert_eq!(status, 405);
    assert_eq!(body["status_code"], 405);
    assert!(app.output_files().is_empty() && app.upload_files().is_empty());
}

#[tokio::test]
async fn console_stays_open_under_rest_auth_and_tells_the_page_to_ask_for_the_token() {
    let app = spawn_app_with(|c| {
        let auth = &mut c.chat_workflows.websocket.auth;
        auth.enabled = true;
        auth.tokens = vec!["console-token".into()];
        auth.protect_rest_api = true;
        c.chat_workflows.websocket.serve_on_rest_port = false;
        c.api.prefix = "/svc".into();
    })
    .await;
    // The API itself refuses a call without the token ...
    let res = app.client.get(format!("{}/svc/chat/workflows", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    // ... while the page, which holds no data, is served and says which auth is on.
    let res = app.client.get(format!("{}/console", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let settings = settings(&res.text().await.unwrap());
    assert_eq!(settings["api_prefix"], "/svc");
    assert_eq!(settings["auth"], serde_json::json!({"rest": true, "websocket": true}));
    assert_eq!(settings["websocket"]["same_origin"], false);
    assert!(!settings.to_string().contains("console-token"), "the token never reaches the page");
}
