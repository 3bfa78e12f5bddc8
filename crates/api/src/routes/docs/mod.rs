//! `GET /docs` (an API reference rendered from the OpenAPI document) and `GET /docs/problems`
//! (the problem types that `type` URIs point to). Plain HTML with inline CSS, rendered here on
//! the server: no external assets and no JavaScript, so it works offline and under a strict CSP.
//!
//! The reference is built from the served OpenAPI JSON: a contents list grouped by tag (in the
//! document's tag order), then every operation with its Markdown description, parameters,
//! request body and responses. Schemas are expanded field by field (`$ref`s resolved, cycles
//! cut) with their types, constraints and examples; a dark side panel shows a `curl` call and an
//! example answer. Every string taken from the document is HTML-escaped, and descriptions go
//! through a small Markdown subset ([`markdown`]) that escapes as it renders.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use actix_web::HttpResponse;
use actix_web::web::{self, Bytes};
use serde_json::{Map, Value};

use crate::problem::ProblemKind;

mod markdown;
mod render;
mod schema;

use render::*;

const STYLE: &str = include_str!("style.css");

/// The methods of a path item, in the order an operation group lists them.
const METHODS: [&str; 8] = [
    "put", "post", "get", "patch", "delete", "head", "options", "trace",
];

/// How deep schemas nest on the page before the rest is cut.
const MAX_DEPTH: usize = 12;

/// Escapes text for HTML (element content and double-quoted attributes).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_esc(&mut out, c);
    }
    out
}

fn push_esc(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => out.push(c),
    }
}

/// A whole HTML page with the shared style.
fn html(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

fn page(html: impl Into<Bytes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html.into())
}

/// The rendered reference and the document it was rendered from.
type Rendered = Option<(Arc<String>, Bytes)>;

/// The API reference, rendered from the OpenAPI document.
#[utoipa::path(
    get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The API reference (HTML, no external assets)", content_type = "text/html"))
)]
pub async fn docs(doc: web::Data<String>) -> HttpResponse {
    // The document never changes in a process: render it once (and again only for another).
    static RENDERED: Mutex<Rendered> = Mutex::new(None);
    let doc = doc.into_inner();
    let cached = RENDERED.lock().ok().and_then(|c| {
        c.as_ref()
            .filter(|(d, _)| d == &doc)
            .map(|(_, page)| page.clone())
    });
    page(cached.unwrap_or_else(|| {
        let spec: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
        let title = spec["info"]["title"].as_str().unwrap_or("API");
        let rendered = Bytes::from(html(
            &format!("{title} reference"),
            &render_reference(&spec),
        ));
        if let Ok(mut c) = RENDERED.lock() {
            *c = Some((doc, rendered.clone()));
        }
        rendered
    }))
}

/// The problem types (`type` of every error body points here).
#[utoipa::path(
    get, path = "/docs/problems", tag = "operations",
    responses((status = 200, description = "The problem types (HTML)", content_type = "text/html"))
)]
pub async fn problems() -> HttpResponse {
    let mut b = String::from(
        "<main class=\"solo\"><h1>Problem types</h1><p>Errors are RFC 9457 problem details \
        (<code>application/problem+json</code>) with a stable <code>code</code> and the \
        <code>request_id</code> also sent as <code>x-request-id</code>.</p>\
        <table><tr><th>status</th><th>code</th><th>title</th></tr>",
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
    b.push_str("</table><p><a href=\"/docs\">API reference</a></p></main>");
    page(html("Provisioner problem types", &b))
}

// ---------------------------------------------------------------------------------------------
// Markdown subset
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::markdown::*;
    use super::*;

    #[test]
    fn markdown_renders_paragraphs_lists_code_bold_and_links() {
        let html = markdown(
            "Intro with `code` and **bold**,\nwrapped.\n\n- one *em*\n- two\n  continued\n\n1. first\n2. [docs](https://example.com/a?b=1&c=2)\n\n```\nlet x = a < b;\n```",
        );
        assert_eq!(
            html,
            "<p>Intro with <code>code</code> and <strong>bold</strong>,\nwrapped.</p>\
             <ul><li>one <em>em</em></li><li>two\ncontinued</li></ul>\
             <ol><li>first</li><li><a href=\"https://example.com/a?b=1&amp;c=2\">docs</a></li></ol>\
             <pre><code>let x = a &lt; b;</code></pre>"
        );
    }

    #[test]
    fn markdown_escapes_and_refuses_unsafe_links() {
        assert_eq!(
            inline("<b>x</b> & `<i>` [a](javascript:alert(1)) [b](java\tscript:x) [c](/docs#x)"),
            "&lt;b&gt;x&lt;/b&gt; &amp; <code>&lt;i&gt;</code> a) [b](java\tscript:x) <a href=\"/docs#x\">c</a>"
        );
        assert_eq!(inline("a ** b * c `d"), "a ** b * c `d");
        assert_eq!(inline("snake_case_name"), "snake_case_name");
        assert_eq!(
            inline("<https://x.example/?a=\"b\">"),
            "<a href=\"https://x.example/?a=&quot;b&quot;\">https://x.example/?a=&quot;b&quot;</a>"
        );
    }

    #[test]
    fn humanized_titles() {
        assert_eq!(humanize("put_user"), "Create or replace user");
        assert_eq!(humanize("openapi_json"), "OpenAPI JSON");
        assert_eq!(humanize("listTenants"), "List tenants");
    }

    fn hostile_spec() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "<script>alert('t')</script>", "version": "1\"><evil-v>",
                "description": "Has <evil-img src=x onerror=alert(1)> and `<code>`"},
            "tags": [{"name": "<evil-tag>", "description": "**<evil-i>bold</evil-i>**"}],
            "paths": {
                "/x/{id}\"><script>": {
                    "post": {
                        "tags": ["<evil-tag>"],
                        "operationId": "\"><script>op",
                        "summary": "Sum <script>alert(2)</script>",
                        "parameters": [{"name": "id<evil-p>", "in": "path", "required": true,
                            "description": "[x](javascript:alert(3))",
                            "schema": {"type": "string", "pattern": "^<evil-pat>$", "enum": ["<evil-e>"]}}],
                        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}},
                        "responses": {"200": {"description": "ok <evil-r>",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}
                    }
                }
            },
            "components": {"schemas": {
                "Node": {"type": "object", "description": "A <evil-node>", "required": ["name"], "properties": {
                    "name": {"type": "string", "example": "</code><script>", "maxLength": 10},
                    "child": {"oneOf": [{"$ref": "#/components/schemas/Node"}, {"type": "null"}]},
                    "kids": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}
                }},
                "Loop": {"$ref": "#/components/schemas/Loop"}
            }}
        })
    }

    #[test]
    fn everything_from_the_document_is_escaped() {
        let html = render_reference(&hostile_spec());
        for raw in ["<script", "<evil", "javascript:"] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
        assert!(html.contains("&lt;script&gt;alert(&#39;t&#39;)&lt;/script&gt;"));
        assert!(html.contains("/x/<span class=\"pp\">{id}</span>&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("<code>&lt;code&gt;</code>"));
        assert!(html.contains("<strong>&lt;evil-i&gt;bold&lt;/evil-i&gt;</strong>"));
        assert!(html.contains("<code>^&lt;evil-pat&gt;$</code>"));
    }

    #[test]
    fn recursive_schemas_are_cut_where_they_close() {
        let html = render_reference(&hostile_spec());
        assert!(html.contains("Recursive: the fields of <a href=\"#schema-Node\">Node</a>"));
        assert!(html.contains("id=\"schema-Loop\""));
        // The nullable self-reference is unwrapped to its component.
        assert!(html.contains("<code class=\"fn\">child</code><span class=\"ty\">object <a href=\"#schema-Node\">Node</a></span><span class=\"nl\">nullable</span>"));
    }

    #[test]
    fn examples_are_built_from_schemas() {
        let spec = hostile_spec();
        let r = Renderer { spec: &spec };
        let node = json!({"$ref": "#/components/schemas/Node"});
        assert_eq!(
            r.example(&node, false, &mut Vec::new(), 0),
            json!({"name": "</code><script>"})
        );
        assert_eq!(
            r.example(&node, true, &mut Vec::new(), 0),
            json!({"name": "</code><script>", "child": null, "kids": [null]})
        );
    }
}
