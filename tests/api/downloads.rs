//! `GET /files/downloads/{filename}` as reached through the `download_url` of the table endpoints:
//! headers, HEAD, ranges, CORS, and names that try to leave the output folder.

use serde_json::json;

use crate::common::{envelope, spawn_app, spawn_app_with, TestApp};
use crate::fixtures::*;

/// Produces one xlsx output through `csv/convert-to-excel`; returns its download URL and name.
async fn one_output(app: &TestApp) -> (String, String) {
    let (data, _) = post_ok(app, "/csv/convert-to-excel", form("c.csv", csv_text(PEOPLE), &[])).await;
    let url = data["download_url"].as_str().unwrap().to_string();
    let name = url_name(&url);
    (url, name)
}

async fn raw_get(app: &TestApp, segment: &str) -> reqwest::Response {
    app.client.get(format!("{}/files/downloads/{segment}", app.api)).send().await.unwrap()
}

#[tokio::test]
async fn download_headers_for_each_output_kind() {
    let app = spawn_app().await;
    let (url, name) = one_output(&app).await;
    let res = app.client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let header =
        |res: &reqwest::Response, h: &str| res.headers().get(h).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header(&res, "content-type").as_deref(), Some(XLSX_MIME));
    assert_eq!(header(&res, "content-disposition"), Some(format!("attachment; filename=\"{name}\"")));
    assert_eq!(header(&res, "accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(header(&res, "cache-control").as_deref(), Some("no-cache"));
    assert!(header(&res, "etag").is_some() && header(&res, "last-modified").is_some());
    let bytes = res.bytes().await.unwrap();
    assert_eq!(xlsx_rows(&bytes, "Sheet1").len(), 5);

    let cond = json!([{"column": "Name", "operator": "is_not_empty", "value": ""}]).to_string();
    for (format, mime) in [("csv", "text/csv; charset=utf-8"), ("json", "application/json")] {
        let fields = [("conditions", cond.as_str()), ("output_format", format)];
        let (data, _) = post_ok(&app, "/csv/search", form("p.csv", csv_text(PEOPLE), &fields)).await;
        let res = app.client.get(data["download_url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(header(&res, "content-type").as_deref(), Some(mime), "{format}");
        assert!(header(&res, "content-disposition").unwrap().starts_with("attachment; "));
    }
}

#[tokio::test]
async fn head_on_a_download_has_headers_and_no_body() {
    let app = spawn_app().await;
    let (url, _) = one_output(&app).await;
    let size = std::fs::metadata(app.config.file.output_folder.join(url_name(&url))).unwrap().len();
    let res = app.client.head(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("content-length").unwrap().to_str().unwrap(), size.to_string());
    assert!(res.headers().get("content-disposition").unwrap().to_str().unwrap().starts_with("attachment"));
    assert!(res.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn range_request_gets_206_with_the_slice() {
    let app = spawn_app().await;
    let (url, _) = one_output(&app).await;
    let whole = app.download(&url).await;
    let res = app.client.get(&url).header("Range", "bytes=0-3").send().await.unwrap();
    assert_eq!(res.status(), 206);
    let range = res.headers().get("content-range").unwrap().to_str().unwrap().to_string();
    assert_eq!(range, format!("bytes 0-3/{}", whole.len()));
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"PK\x03\x04");
    let res =
        app.client.get(&url).header("Range", format!("bytes={}-", whole.len() - 10)).send().await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &whole[whole.len() - 10..]);
    // A range past the end is 416 (as the route documents), in the envelope, with the file's size.
    let res =
        app.client.get(&url).header("Range", format!("bytes={}-", whole.len() + 5)).send().await.unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers()["content-range"], format!("bytes */{}", whole.len()).as_str());
    let (status, body) = envelope(res).await;
    assert_eq!(status, 416);
    assert_eq!(body["status_code"], 416, "{body}");
    assert_eq!(body["data"]["error_type"], "RangeNotSatisfiable", "{body}");
}

#[tokio::test]
async fn downloads_carry_cors_headers() {
    let app = spawn_app().await;
    let (url, _) = one_output(&app).await;
    let res = app.client.get(&url).header("Origin", "http://studio.example:3000").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let allow = res.headers().get("access-control-allow-origin").unwrap().to_str().unwrap();
    assert!(allow == "http://studio.example:3000" || allow == "*", "{allow}");
    let expose =
        res.headers().get("access-control-expose-headers").unwrap().to_str().unwrap().to_ascii_lowercase();
    assert!(expose.contains("content-disposition") && expose.contains("x-request-id"), "{expose}");
    // Preflight of the upload endpoints.
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/excel/search", app.api))
        .header("Origin", "http://studio.example:3000")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let methods = res.headers().get("access-control-allow-methods").unwrap().to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
}

#[tokio::test]
async fn names_outside_the_output_folder_are_never_served() {
    let app = spawn_app().await;
    one_output(&app).await;
    // Files that exist outside the output folder, next to it and at the test root.
    std::fs::write(app.dir.path().join("secret.txt"), "top secret").unwrap();
    std::fs::write(app.config.file.upload_folder.join("secret.txt"), "top secret").unwrap();
    for segment in [
        "..%2Fsecret.txt",
        "..%2F..%2Fsecret.txt",
        "%2E%2E%2Fsecret.txt",
        "..%5Csecret.txt",
        "%2Fetc%2Fpasswd",
        "..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "uploads%2Fsecret.txt",
    ] {
        let res = raw_get(&app, segment).await;
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert!(status == 404 || status == 400, "{segment}: {status}");
        assert!(!body.contains("top secret") && !body.contains("root:"), "{segment} leaked a file");
    }
    // A name that sanitizes to nothing is a 400.
    for segment in ["....", "%2E%2E%2E%2E", "%E6%96%87"] {
        let res = raw_get(&app, segment).await;
        let (status, body) = crate::common::envelope(res).await;
        assert_eq!((status, body["message"].as_str()), (400, Some("Invalid file path")), "{segment}");
    }
    // A plain name that does not exist.
    let (status, body) = crate::common::envelope(raw_get(&app, "nope.xlsx").await).await;
    assert_eq!((status, body["message"].as_str()), (404, Some("File not found")));
    // A symbolic link inside the output folder pointing outside is not followed.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            app.dir.path().join("secret.txt"),
            app.config.file.output_folder.join("link.txt"),
        )
        .unwrap();
        let res = raw_get(&app, "link.txt").await;
        assert_eq!(res.status(), 404);
        assert!(!res.text().await.unwrap().contains("top secret"));
    }
}

#[tokio::test]
async fn download_urls_use_public_base_url_and_prefix() {
    let app = spawn_app_with(|c| c.app.public_base_url = Some("https://files.example.org/".into())).await;
    let (url, name) = one_output(&app).await;
    assert_eq!(url, format!("https://files.example.org/api/v1/files/downloads/{name}"));
    // The file itself is there and downloadable on this server.
    let local = format!("{}/files/downloads/{name}", app.api);
    assert_eq!(&app.download(&local).await[..2], b"PK");
}

#[tokio::test]
async fn upload_folder_is_empty_after_success_and_error() {
    let app = spawn_app().await;
    let cond = json!([{"column": "Name", "operator": "equals", "value": "John Doe"}]).to_string();
    // `post` asserts the upload folder is empty after each request.
    post_ok(&app, "/excel/search", form("p.xlsx", xlsx(PEOPLE), &[("conditions", &cond)])).await;
    post_ok(&app, "/csv/search", form("p.csv", csv_text(PEOPLE), &[("conditions", &cond)])).await;
    post(&app, "/excel/search", form("p.csv", csv_text(PEOPLE), &[("conditions", &cond)])).await;
    post(&app, "/csv/info", form("p.xlsx", xlsx(PEOPLE), &[])).await;
    post(&app, "/excel/map-columns", form("p.xlsx", xlsx(PEOPLE), &[("mapping", "{bad")])).await;
    post(&app, "/excel/search", form("p.xlsx", dimension_bomb(), &[("conditions", &cond)])).await;
    post(&app, "/excel/info", form("p.xlsx", zip_bomb(), &[])).await;
    assert!(app.upload_files().is_empty());
    assert_eq!(app.output_files().len(), 2);
}
