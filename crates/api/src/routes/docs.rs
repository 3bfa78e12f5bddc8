//! `GET /docs` (an API reference rendered from the OpenAPI document) and `GET /docs/problems`
//! (the problem types that `type` URIs point to). Plain HTML with inline CSS: no external
//! assets, no JavaScript, so it works offline and under a strict CSP.

use std::fmt::Write as _;

use actix_web::{HttpResponse, web};
use serde_json::Value;

use crate::problem::ProblemKind;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
code,pre{background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}table{border-collapse:collapse;margin:.5rem 0}\
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}\
.op{border-left:4px solid #888;padding:.2rem .8rem;margin:1rem 0}.m{font-weight:bold;text-transform:uppercase}";

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    ))
}

/// The API reference, rendered from the OpenAPI document.
#[utoipa::path(
    get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The API reference (HTML, no external assets)", content_type = "text/html"))
)]
pub async fn docs(doc: web::Data<String>) -> HttpResponse {
    let spec: Value = serde_json::from_str(doc.get_ref()).unwrap_or(Value::Null);
    page("Provisioner API", &render_reference(&spec))
}

/// The problem types (`type` of every error body points here).
#[utoipa::path(
    get, path = "/docs/problems", tag = "operations",
    responses((status = 200, description = "The problem types (HTML)", content_type = "text/html"))
)]
pub async fn problems() -> HttpResponse {
    let mut b = String::from(
        "<h1>Problem types</h1><p>Errors are RFC 9457 problem details \
        (<code>application/problem+json</code>) with a stable <code>code</code> and the \
        <code>request_id</code> also sent as <code>x-request-id</code>.</p><table><tr><th>status</th><th>code</th><th>title</th></tr>",
    );
    for kind in ProblemKind::ALL {
        let (status, code, title) = kind.meta();
        let _ = write!(
            b,
            "<tr id=\"{code}\"><td>{}</td><td><code>{code}</code></td><td>{}</td></tr>",
            status.as_u16(),
            esc(title)
        );
    }
    b.push_str("</table><p><a href=\"/docs\">API reference</a></p>");
    page("Provisioner problem types", &b)
}

fn render_reference(spec: &Value) -> String {
    let mut b = String::new();
    let info = &spec["info"];
    let _ = write!(
        b,
        "<h1>{} <small>{}</small></h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {}). Errors: <a href=\"/docs/problems\">problem types</a>.</p>",
        esc(info["title"].as_str().unwrap_or("API")),
        esc(info["version"].as_str().unwrap_or("")),
        esc(info["description"].as_str().unwrap_or("")),
        esc(spec["openapi"].as_str().unwrap_or("")),
    );
    let Some(paths) = spec["paths"].as_object() else {
        return b;
    };
    for (path, item) in paths {
        let Some(ops) = item.as_object() else {
            continue;
        };
        for (method, op) in ops {
            let _ = write!(
                b,
                "<div class=\"op\"><h3><span class=\"m\">{}</span> <code>{}</code></h3><p>{}</p>",
                esc(method),
                esc(path),
                esc(op["description"]
                    .as_str()
                    .or(op["summary"].as_str())
                    .unwrap_or(""))
            );
            if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                b.push_str("<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>");
                for p in params {
                    let _ = write!(
                        b,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(p["name"].as_str().unwrap_or("")),
                        esc(p["in"].as_str().unwrap_or("")),
                        p["required"].as_bool().unwrap_or(false),
                        esc(p["description"].as_str().unwrap_or(""))
                    );
                }
                b.push_str("</table>");
            }
            if let Some(body) = op["requestBody"]["content"].as_object() {
                for (ct, c) in body {
                    let _ = write!(
                        b,
                        "<p>Body ({}): <code>{}</code></p>",
                        esc(ct),
                        esc(&schema_name(&c["schema"]))
                    );
                }
            }
            if let Some(resps) = op["responses"].as_object() {
                b.push_str("<table><tr><th>status</th><th>meaning</th></tr>");
                for (status, r) in resps {
                    let text = r["description"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| schema_name(r));
                    let _ = write!(
                        b,
                        "<tr><td>{}</td><td>{}</td></tr>",
                        esc(status),
                        esc(&text)
                    );
                }
                b.push_str("</table>");
            }
            b.push_str("</div>");
        }
    }
    b
}

/// `#/components/schemas/TenantIn` -> `TenantIn`.
fn schema_name(v: &Value) -> String {
    v["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or("object")
        .to_owned()
}
