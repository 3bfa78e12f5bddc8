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

const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;--link:#0969da;--side:272px;
--get:#1a7f37;--post:#0969da;--put:#9a6700;--patch:#8250df;--delete:#cf222e;--other:#59636e;
--mono:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,"Liberation Mono","DejaVu Sans Mono",monospace}
*{box-sizing:border-box}
html{scroll-padding-top:12px}
body{margin:0;color:var(--fg);background:#fff;font:15px/1.6 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Helvetica Neue",Arial,sans-serif}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
code,pre{font-family:var(--mono);font-size:.85em}
code{background:rgba(175,184,193,.2);padding:.1em .35em;border-radius:5px}
pre code{background:none;padding:0}
p{margin:6px 0}ul,ol{margin:6px 0;padding-left:22px}
.toc{position:fixed;top:0;bottom:0;left:0;width:var(--side);overflow-y:auto;background:var(--soft);border-right:1px solid var(--line);padding:22px 14px 40px;font-size:14px}
.toc .brand{display:block;font-weight:700;font-size:17px;color:var(--fg);padding:0 6px}
.toc .ver{display:block;color:var(--muted);font-size:12px;padding:0 6px 10px}
.toc .top{display:block;padding:3px 6px;color:var(--fg);border-radius:6px}
.toc .tg{margin-top:16px}
.toc .tgn{display:block;padding:2px 6px;font-size:11.5px;font-weight:700;letter-spacing:.07em;text-transform:uppercase;color:var(--muted)}
.toc ul{list-style:none;margin:2px 0 0;padding:0}
.toc li a{display:flex;gap:8px;align-items:baseline;padding:3px 6px;border-radius:6px;color:var(--fg);line-height:1.35}
.toc li a:hover,.toc .top:hover{background:#e8ecf0;text-decoration:none}
.toc li .m{flex:none;width:44px;text-align:right;font-size:9.5px}
.toc .dep{text-decoration:line-through;color:var(--muted)}
main{margin-left:var(--side);padding:0 40px 80px;max-width:calc(var(--side) + 1240px)}
main.solo{margin:0 auto;max-width:64rem}
h1{font-size:30px;line-height:1.25;margin:34px 0 8px}
h2{font-size:24px;line-height:1.3;margin:0 0 4px}
h3{font-size:19px;line-height:1.35;margin:0 0 8px}
h4{font-size:12.5px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:24px 0 6px;padding-bottom:5px;border-bottom:1px solid var(--line)}
h4 .h4n{text-transform:none;letter-spacing:0;font-weight:400;margin-left:6px}
h5.mdh{font-size:14px;margin:10px 0 4px}
.ver1{font-size:13px;font-weight:500;color:var(--muted);border:1px solid var(--line);border-radius:20px;padding:2px 9px;vertical-align:middle;margin-left:6px}
.intro{padding-bottom:26px}
.lead{font-size:16px;max-width:50rem}
.meta{display:flex;flex-wrap:wrap;gap:6px 18px;color:var(--muted);font-size:13.5px;margin-top:12px}
.box{border:1px solid var(--line);border-radius:10px;padding:6px 16px 10px;margin:10px 0 0;max-width:50rem}
.box h3{font-size:16px;margin:8px 0 2px}
.tag{padding-top:44px}
.tag>h2{padding-bottom:2px}
.tagd{color:var(--muted);margin-bottom:10px}
.op{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,23rem);gap:30px;padding:28px 0 34px;border-top:1px solid var(--line)}
.ep{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin:0 0 12px}
.m{font:700 11px/1 var(--mono);letter-spacing:.03em;text-transform:uppercase;color:var(--other)}
.ep .m{color:#fff;background:var(--other);padding:5px 7px;border-radius:5px}
.m-get{color:var(--get)}.m-post{color:var(--post)}.m-put{color:var(--put)}.m-patch{color:var(--patch)}.m-delete{color:var(--delete)}
.ep .m-get{background:var(--get)}.ep .m-post{background:var(--post)}.ep .m-put{background:var(--put)}.ep .m-patch{background:var(--patch)}.ep .m-delete{background:var(--delete)}
.path{background:none;padding:0;font-size:14.5px;word-break:break-all}
.pp{color:var(--link)}
.depb{font-size:11px;font-weight:600;color:#9a6700;border:1px solid #d4a72c;border-radius:20px;padding:1px 7px;margin-left:8px;vertical-align:middle}
.auth{font-size:13px;color:var(--muted);margin:10px 0 0}
.auth b{color:var(--fg);font-weight:600}
.fields{border-top:1px solid var(--line)}
.fields.top{border-top:0}
.field{padding:9px 0 10px 2px;border-bottom:1px solid var(--line)}
.fields>.field:last-child{border-bottom:0}
.fh{display:flex;flex-wrap:wrap;gap:2px 10px;align-items:baseline}
.fn{background:none;padding:0;font-weight:650;font-size:14px;color:var(--fg)}
.ty{font-size:13px;color:var(--muted)}
.ty a{font-family:var(--mono);font-size:12.5px}
.rq{font-size:11.5px;font-weight:700;color:#bc4c00}
.nl,.ro{font-size:11.5px;color:var(--muted)}
.fd{font-size:14.5px}
.cons{display:flex;flex-wrap:wrap;gap:4px 6px;margin-top:5px}
.c{font-size:12px;color:var(--muted);border:1px solid var(--line);border-radius:6px;padding:1px 7px;background:#fff;max-width:100%;overflow-wrap:anywhere}
.c b{font-weight:600;color:#424a53}
.c code{font-size:11.5px;padding:0 .3em}
details>summary{cursor:pointer;list-style:none}
details>summary::-webkit-details-marker{display:none}
summary::before{content:"";display:inline-block;border-left:5px solid currentColor;border-top:4px solid transparent;border-bottom:4px solid transparent;margin-right:8px;vertical-align:1px;transition:transform .12s}
details[open]>summary::before{transform:rotate(90deg)}
details.sub{margin:8px 0 0;border-left:2px solid var(--line);padding-left:14px}
details.sub>summary{font-size:13px;color:var(--muted);width:max-content;max-width:100%}
details.sub>summary:hover{color:var(--fg)}
.resps{border:1px solid var(--line);border-radius:8px;overflow:hidden;margin:8px 0}
.resp{border-bottom:1px solid var(--line);font-size:14.5px}
.resp:last-child{border-bottom:0}
.resp>summary,.resp>.rh{display:flex;gap:10px;align-items:baseline;padding:7px 12px}
.resp>.rh{padding-left:25px}
.resp>summary::before{align-self:center}
.resp>summary:hover{background:var(--soft)}
.resp[open]>summary{border-bottom:1px solid var(--line);background:var(--soft)}
.rd{flex:1;min-width:0}
.sc{font:700 13px var(--mono)}
.s2{color:var(--get)}.s3{color:var(--post)}.s4{color:#bc4c00}.s5{color:var(--delete)}
.rt{font-size:12.5px;color:var(--muted);white-space:nowrap}
.rb{padding:4px 14px 10px}
.ct{font-size:13px;color:var(--muted);margin:8px 0 4px}
.note{font-size:13px;color:var(--muted);margin:6px 0}
.ox{position:sticky;top:16px;align-self:start;min-width:0}
.ex{background:#0d1117;color:#e6edf3;border-radius:10px;margin:0 0 16px;overflow:hidden}
.exh{display:flex;justify-content:space-between;gap:8px;font-size:11px;font-weight:600;letter-spacing:.06em;text-transform:uppercase;color:#9198a1;background:#161b22;padding:8px 14px}
.exh span:last-child{text-transform:none;letter-spacing:0;font-weight:400;min-width:0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.ex pre{margin:0;padding:12px 14px;overflow:auto;max-height:520px;font-size:12.5px;line-height:1.55}
.ex pre.wrap{white-space:pre-wrap;overflow-wrap:anywhere}
.jk{color:#7ee787}.js{color:#a5d6ff}.jn{color:#79c0ff}.jl{color:#ff7b72}.cm{color:#9198a1}
.schemas{padding-top:44px}
.schema{padding:18px 0;border-top:1px solid var(--line)}
.schema h3{font-family:var(--mono);font-size:16px;margin:0 0 4px}
.variant{margin:8px 0;padding:4px 0 4px 12px;border-left:3px solid var(--line)}
.vh{font-size:13px;font-weight:600;color:var(--muted)}
table{border-collapse:collapse;margin:12px 0;width:100%}
td,th{border-bottom:1px solid var(--line);padding:7px 10px;text-align:left;vertical-align:top}
th{font-size:12.5px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
tr:target{background:#fff8c5}
@media (max-width:1180px){.op{grid-template-columns:minmax(0,1fr)}.ox{position:static}}
@media (max-width:820px){.toc{position:static;width:auto;border-right:0;border-bottom:1px solid var(--line)}main{margin-left:0;padding:0 18px 60px}}
@media print{.toc{display:none}main{margin:0}.ox{position:static}}
"#;

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

/// Renders a Markdown subset to HTML: paragraphs, `-`/`*`/`+` and numbered lists, fenced code
/// blocks and `#` headings, with [`inline`] spans. Anything else is text, and all text is
/// escaped.
fn markdown(src: &str) -> String {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = String::new();
    let mut para: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if t.is_empty() {
            flush_paragraph(&mut out, &mut para);
            i += 1;
        } else if t.starts_with("```") {
            flush_paragraph(&mut out, &mut para);
            let indent = lines[i].len() - lines[i].trim_start().len();
            let mut code: Vec<&str> = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                let l = lines[i];
                let cut = l.len() - l.trim_start().len();
                code.push(&l[cut.min(indent)..]);
                i += 1;
            }
            i += 1;
            let _ = write!(out, "<pre><code>{}</code></pre>", esc(&code.join("\n")));
        } else if let Some(text) = heading(t) {
            flush_paragraph(&mut out, &mut para);
            let _ = write!(out, "<h5 class=\"mdh\">{}</h5>", inline(text));
            i += 1;
        } else if let Some((ordered, _)) = list_item(t).filter(|(o, rest)| {
            // Inside a paragraph only a bullet or a list starting at 1 begins a list.
            para.is_empty() || !o || rest.0 == 1
        }) {
            flush_paragraph(&mut out, &mut para);
            let mut items: Vec<String> = Vec::new();
            while i < lines.len() {
                let t = lines[i].trim();
                if t.is_empty() {
                    let mut j = i;
                    while j < lines.len() && lines[j].trim().is_empty() {
                        j += 1;
                    }
                    if j < lines.len()
                        && list_item(lines[j].trim()).is_some_and(|(o, _)| o == ordered)
                    {
                        i = j;
                        continue;
                    }
                    break;
                }
                match list_item(t) {
                    Some((o, (_, rest))) if o == ordered => items.push(rest.to_owned()),
                    Some(_) => break,
                    None if t.starts_with("```") || heading(t).is_some() => break,
                    None => {
                        if let Some(last) = items.last_mut() {
                            last.push('\n');
                            last.push_str(t);
                        }
                    }
                }
                i += 1;
            }
            let tag = if ordered { "ol" } else { "ul" };
            let _ = write!(out, "<{tag}>");
            for item in &items {
                let _ = write!(out, "<li>{}</li>", inline(item));
            }
            let _ = write!(out, "</{tag}>");
        } else {
            para.push(t);
            i += 1;
        }
    }
    flush_paragraph(&mut out, &mut para);
    out
}

fn flush_paragraph(out: &mut String, para: &mut Vec<&str>) {
    if !para.is_empty() {
        let _ = write!(out, "<p>{}</p>", inline(&para.join("\n")));
        para.clear();
    }
}

/// `# Title` (1-6 `#`s and a space) -> `Title`.
fn heading(t: &str) -> Option<&str> {
    let level = t.bytes().take_while(|&b| b == b'#').count();
    (1..=6).contains(&level).then_some(())?;
    t[level..].strip_prefix(' ').map(str::trim)
}

/// A list item line -> (ordered, (number, the text after the marker)).
fn list_item(t: &str) -> Option<(bool, (u64, &str))> {
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(bullet) {
            return Some((false, (0, rest.trim_start())));
        }
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        let rest = &t[digits..];
        let rest = rest
            .strip_prefix(". ")
            .or_else(|| rest.strip_prefix(") "))?;
        return Some((true, (t[..digits].parse().ok()?, rest.trim_start())));
    }
    None
}

/// Renders inline Markdown: `code`, **bold**, *emphasis*, [links](url), <autolinks> and
/// backslash escapes. Everything else is escaped text.
fn inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        let rest = &s[i..];
        match c {
            '\\' => {
                if let Some(n) = rest[1..].chars().next().filter(char::is_ascii_punctuation) {
                    push_esc(&mut out, n);
                    i += 2;
                    continue;
                }
            }
            '`' => {
                let n = rest.bytes().take_while(|&b| b == b'`').count();
                if let Some(end) = backtick_run(&rest[n..], n) {
                    let code = rest[n..n + end].replace('\n', " ");
                    let code = match code.strip_prefix(' ').and_then(|c| c.strip_suffix(' ')) {
                        Some(inner) if !inner.trim().is_empty() => inner,
                        _ => &code,
                    };
                    let _ = write!(out, "<code>{}</code>", esc(code));
                    i += 2 * n + end;
                } else {
                    out.push_str(&rest[..n]);
                    i += n;
                }
                continue;
            }
            '*' => {
                if let Some(inner) = rest.strip_prefix("**") {
                    if let Some(end) = inner.find("**").filter(|&e| delimits(&inner[..e])) {
                        let _ = write!(out, "<strong>{}</strong>", inline(&inner[..end]));
                        i += 4 + end;
                        continue;
                    }
                    out.push_str("**");
                    i += 2;
                    continue;
                }
                if let Some(end) = rest[1..].find('*').filter(|&e| delimits(&rest[1..1 + e])) {
                    let _ = write!(out, "<em>{}</em>", inline(&rest[1..1 + end]));
                    i += 2 + end;
                    continue;
                }
            }
            '[' => {
                if let Some((text, url, used)) = link(rest) {
                    match safe_url(url) {
                        Some(href) => {
                            let _ = write!(out, "<a href=\"{}\">{}</a>", esc(&href), inline(text));
                        }
                        None => out.push_str(&inline(text)),
                    }
                    i += used;
                    continue;
                }
            }
            '<' => {
                if let Some(end) = rest.find('>') {
                    let url = &rest[1..end];
                    let auto = ["http://", "https://", "mailto:"]
                        .iter()
                        .any(|p| url.to_ascii_lowercase().starts_with(p));
                    if auto && !url.chars().any(|c| c.is_whitespace() || c == '<') {
                        let _ = write!(out, "<a href=\"{0}\">{0}</a>", esc(url));
                        i += end + 1;
                        continue;
                    }
                }
            }
            _ => {}
        }
        push_esc(&mut out, c);
        i += c.len_utf8();
    }
    out
}

/// Whether `inner` can sit between emphasis delimiters (not empty, no space at either edge).
fn delimits(inner: &str) -> bool {
    !inner.is_empty()
        && !inner.starts_with(char::is_whitespace)
        && !inner.ends_with(char::is_whitespace)
}

/// The offset of the next run of exactly `n` backticks in `s`.
fn backtick_run(s: &str, n: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'`' {
            let m = b[i..].iter().take_while(|&&c| c == b'`').count();
            if m == n {
                return Some(i);
            }
            i += m;
        } else {
            i += 1;
        }
    }
    None
}

/// `[text](url)` at the start of `s` -> (text, url, bytes used).
fn link(s: &str) -> Option<(&str, &str, usize)> {
    let close = s.find(']')?;
    let after = s[close + 1..].strip_prefix('(')?;
    let end = after.find(')')?;
    let inside = after[..end].trim();
    let url = match inside.split_once(char::is_whitespace) {
        // A title may follow the destination; anything else means this is not a link.
        Some((url, title)) if title.trim_start().starts_with(['"', '\'']) => url,
        Some(_) => return None,
        None => inside,
    };
    Some((&s[1..close], url, close + 2 + end + 1))
}

/// The URL when it is safe in an `href`: http(s), mailto or relative; never `javascript:` and
/// the like (control characters and spaces, which browsers drop, are dropped first).
fn safe_url(url: &str) -> Option<String> {
    let url: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    if url.is_empty() {
        return None;
    }
    let lower = url.to_ascii_lowercase();
    let scheme_end = lower.find(':');
    let first_sep = lower.find(['/', '?', '#']).unwrap_or(lower.len());
    let allowed = ["http://", "https://", "mailto:"]
        .iter()
        .any(|p| lower.starts_with(p))
        || scheme_end.is_none_or(|c| c > first_sep);
    allowed.then_some(url)
}

/// Markdown for a short text in a line (a response's description): inline spans when it is a
/// single paragraph, blocks otherwise.
fn short_markdown(s: &str) -> String {
    let s = s.trim();
    let blocks = s.contains("\n\n")
        || s.lines()
            .any(|l| list_item(l.trim()).is_some() || l.trim_start().starts_with("```"));
    if blocks { markdown(s) } else { inline(s) }
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

/// A schema with its `$ref`s resolved and nullability unwrapped: `s` holds the inner schema's
/// keywords with the outer layers' (a property's `description` beside its `$ref`) on top.
struct Shape {
    s: Map<String, Value>,
    /// The component it came from (the last `$ref` followed).
    name: Option<String>,
    nullable: bool,
}

impl Shape {
    fn get(&self, k: &str) -> Option<&Value> {
        self.s.get(k)
    }
    fn str(&self, k: &str) -> Option<&str> {
        self.s.get(k).and_then(Value::as_str)
    }
    /// The type keyword, or the one the other keywords imply.
    fn ty(&self) -> &str {
        if let Some(t) = self.str("type") {
            return t;
        }
        if self.s.contains_key("properties") || self.s.contains_key("additionalProperties") {
            "object"
        } else if self.s.contains_key("items") {
            "array"
        } else if self.s.contains_key("oneOf") {
            "oneOf"
        } else if self.s.contains_key("anyOf") {
            "anyOf"
        } else if let Some(first) = self.get("enum").and_then(|e| e.get(0)) {
            json_type(first)
        } else {
            ""
        }
    }
    fn properties(&self) -> Option<&Map<String, Value>> {
        self.get("properties")
            .and_then(Value::as_object)
            .filter(|p| !p.is_empty())
    }
    /// The schema of a map's values (`additionalProperties` as a schema).
    fn map_values(&self) -> Option<&Value> {
        self.get("additionalProperties").filter(|v| v.is_object())
    }
    fn variants(&self) -> Option<&Vec<Value>> {
        self.get("oneOf")
            .or_else(|| self.get("anyOf"))
            .and_then(Value::as_array)
            .filter(|v| !v.is_empty())
    }
    /// Property names, required ones first (in the document's order), then the rest.
    fn ordered_properties(&self) -> Vec<(&String, &Value, bool)> {
        let Some(props) = self.properties() else {
            return Vec::new();
        };
        let required: Vec<&str> = self
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out: Vec<(&String, &Value, bool)> = required
            .iter()
            .filter_map(|r| props.get_key_value(*r).map(|(k, v)| (k, v, true)))
            .collect();
        out.extend(
            props
                .iter()
                .filter(|(k, _)| !required.contains(&k.as_str()))
                .map(|(k, v)| (k, v, false)),
        );
        out
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_null_schema(v: &Value) -> bool {
    v["type"] == "null" || v["enum"].as_array().is_some_and(|e| e == &[Value::Null])
}

/// A short, single-line rendering of a JSON value (strings quoted, long ones cut).
fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        let cut: String = s.chars().take(157).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// `#/components/schemas/TenantIn` -> `TenantIn`.
fn ref_name(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

/// An `id` attribute value: letters, digits, `-` and `_` only.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `put_user` -> `Create or replace user`, `openapi_json` -> `OpenAPI JSON`.
fn humanize(id: &str) -> String {
    let mut spaced = String::new();
    let mut prev_lower = false;
    for c in id.chars() {
        if c == '_' || c == '-' || c == ' ' || c == '.' {
            spaced.push(' ');
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            spaced.push(' ');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        spaced.push(c);
    }
    let mut words: Vec<String> = spaced
        .split_whitespace()
        .map(|w| match w.to_ascii_lowercase().as_str() {
            "api" => "API".into(),
            "id" => "ID".into(),
            "ids" => "IDs".into(),
            "json" => "JSON".into(),
            "html" => "HTML".into(),
            "jwt" => "JWT".into(),
            "url" => "URL".into(),
            "openapi" => "OpenAPI".into(),
            lower => lower.to_owned(),
        })
        .collect();
    if words.len() > 1 && words[0] == "put" {
        words[0] = "create or replace".into();
    }
    let joined = words.join(" ");
    let mut chars = joined.chars();
    match chars.next() {
        Some(f) => f.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An operation of the document, ready to render.
struct Op<'a> {
    path: &'a str,
    method: &'static str,
    op: &'a Value,
    params: Vec<&'a Value>,
    anchor: String,
    title: String,
}

/// The operations of one tag.
struct Group<'a> {
    name: String,
    description: Option<&'a str>,
    ops: Vec<Op<'a>>,
}

/// Renders the reference page's body (contents, operations, schemas) from a parsed document.
fn render_reference(spec: &Value) -> String {
    Renderer { spec }.render()
}

struct Renderer<'a> {
    spec: &'a Value,
}

impl<'a> Renderer<'a> {
    /// What a local `$ref` (`#/components/...`) points to.
    fn lookup(&self, r: &str) -> Option<&'a Value> {
        r.strip_prefix('#').and_then(|p| self.spec.pointer(p))
    }

    /// Follows `$ref`s (bounded) to a non-reference object.
    fn deref(&self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match v["$ref"].as_str().and_then(|r| self.lookup(r)) {
                Some(t) => v = t,
                None => break,
            }
        }
        v
    }

    fn shape(&self, v: &Value) -> Shape {
        self.shape_at(v, 0)
    }

    fn shape_at(&self, v: &Value, depth: usize) -> Shape {
        let mut name = None;
        let mut nullable = false;
        let mut over: Map<String, Value> = Map::new();
        let mut cur = v.clone();
        for _ in 0..32 {
            let Value::Object(mut m) = cur else {
                break;
            };
            if m.get("nullable") == Some(&Value::Bool(true)) {
                nullable = true;
            }
            m.remove("nullable");
            if let Some(Value::Array(types)) = m.get("type") {
                let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                nullable |= rest.len() < types.len();
                match rest.len() {
                    0 => m.remove("type"),
                    1 => m.insert("type".into(), rest[0].clone()),
                    _ => m.insert("type".into(), Value::Array(rest)),
                };
            }
            if let Some(Value::String(r)) = m.remove("$ref") {
                name = Some(ref_name(&r).to_owned());
                absorb(&mut over, m);
                cur = self.lookup(&r).cloned().unwrap_or_default();
                continue;
            }
            let mut unwrapped = None;
            for key in ["oneOf", "anyOf"] {
                if let Some(Value::Array(vs)) = m.get(key) {
                    let real: Vec<&Value> = vs.iter().filter(|v| !is_null_schema(v)).collect();
                    if real.len() == 1 {
                        nullable |= vs.len() > 1;
                        unwrapped = Some(real[0].clone());
                        m.remove(key);
                        break;
                    }
                }
            }
            if let Some(inner) = unwrapped {
                absorb(&mut over, m);
                cur = inner;
                continue;
            }
            if let Some(Value::Array(parts)) = m.remove("allOf")
                && depth < MAX_DEPTH
            {
                let shapes: Vec<Shape> =
                    parts.iter().map(|p| self.shape_at(p, depth + 1)).collect();
                if let [only] = shapes.as_slice() {
                    name = only.name.clone().or(name);
                }
                for part in shapes {
                    nullable |= part.nullable && parts.len() == 1;
                    merge_all_of(&mut m, part.s);
                }
            }
            for (k, v) in over {
                m.insert(k, v);
            }
            return Shape {
                s: m,
                name,
                nullable,
            };
        }
        Shape {
            s: over,
            name,
            nullable,
        }
    }

    /// The type as HTML: `string<date-time>`, `array of Name`, `map of string`, `object Name`.
    fn type_label(&self, sh: &Shape, depth: usize) -> String {
        // A named object inside another type (`array of AppOut`) is its name alone.
        let named = |base: &str| match &sh.name {
            Some(n) if depth > 0 && base == "object" => {
                format!("<a href=\"#schema-{}\">{}</a>", slug(n), esc(n))
            }
            Some(n) => format!("{base} <a href=\"#schema-{}\">{}</a>", slug(n), esc(n)),
            None => base.to_owned(),
        };
        let ty = sh.ty();
        match ty {
            "array" if depth < MAX_DEPTH => match sh.get("items") {
                Some(items) => format!(
                    "array of {}",
                    self.type_label(&self.shape(items), depth + 1)
                ),
                None => named("array"),
            },
            "object" if sh.properties().is_none() && sh.name.is_none() && depth < MAX_DEPTH => {
                match sh.map_values() {
                    Some(v) => format!("map of {}", self.type_label(&self.shape(v), depth + 1)),
                    None => "object".into(),
                }
            }
            "oneOf" | "anyOf" => {
                let word = if ty == "oneOf" { "one of" } else { "any of" };
                named(word)
            }
            "" => named("any"),
            _ => {
                let mut base = esc(ty);
                if let Some(f) = sh.str("format") {
                    let _ = write!(base, "&lt;{}&gt;", esc(f));
                }
                named(&base)
            }
        }
    }

    /// The constraint chips of a field: enum, pattern, ranges, lengths, default, example.
    fn constraints(&self, sh: &Shape, example: Option<&Value>) -> String {
        let c = self.chips(sh, example, "");
        if c.is_empty() {
            c
        } else {
            format!("<div class=\"cons\">{c}</div>")
        }
    }

    fn chips(&self, sh: &Shape, example: Option<&Value>, prefix: &str) -> String {
        let mut c = String::new();
        let mut chip = |label: &str, value: String| {
            let _ = write!(c, "<span class=\"c\"><b>{prefix}{label}</b> {value}</span>");
        };
        if let Some(values) = sh.get("enum").and_then(Value::as_array) {
            let list: Vec<String> = values
                .iter()
                .map(|v| {
                    let s = v.as_str().map_or_else(|| short_json(v), str::to_owned);
                    format!("<code>{}</code>", esc(&s))
                })
                .collect();
            chip("one of", list.join(" "));
        }
        if let Some(v) = sh.get("const") {
            chip("always", format!("<code>{}</code>", esc(&short_json(v))));
        }
        if let Some(p) = sh.str("pattern") {
            chip("pattern", format!("<code>{}</code>", esc(p)));
        }
        let num = |k: &str| sh.get(k).filter(|v| v.is_number()).map(Value::to_string);
        range(&mut chip, "length", num("minLength"), num("maxLength"));
        range(&mut chip, "value", num("minimum"), num("maximum"));
        if let Some(v) = num("exclusiveMinimum") {
            chip("greater than", esc(&v));
        }
        if let Some(v) = num("exclusiveMaximum") {
            chip("less than", esc(&v));
        }
        if let Some(v) = num("multipleOf") {
            chip("multiple of", esc(&v));
        }
        range(&mut chip, "items", num("minItems"), num("maxItems"));
        range(
            &mut chip,
            "properties",
            num("minProperties"),
            num("maxProperties"),
        );
        if sh.get("uniqueItems") == Some(&Value::Bool(true)) {
            chip("unique", "items".into());
        }
        if let Some(v) = sh.get("default") {
            chip("default", format!("<code>{}</code>", esc(&short_json(v))));
        }
        let example = example
            .or_else(|| sh.get("example"))
            .or_else(|| sh.get("examples").and_then(|e| e.get(0)));
        if let Some(v) = example {
            chip("example", format!("<code>{}</code>", esc(&short_json(v))));
        }
        // Constraints of a list's items (`scopes: array of string` with a pattern per item).
        if sh.ty() == "array"
            && prefix.is_empty()
            && let Some(items) = sh.get("items")
        {
            let it = self.shape(items);
            if !self.has_children(&it, 0) {
                c.push_str(&self.chips(&it, None, "each: "));
            }
        }
        c
    }

    /// Whether a schema has fields to expand (an object's, its items', its values', variants).
    fn has_children(&self, sh: &Shape, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        if sh.properties().is_some() || sh.variants().is_some() {
            return true;
        }
        let inner = match sh.ty() {
            "array" => sh.get("items"),
            "object" => sh.map_values(),
            _ => None,
        };
        inner.is_some_and(|v| self.has_children(&self.shape(v), depth + 1))
    }

    /// The component being expanded already that a field's schema (or its items' or values')
    /// is, if any.
    fn closes_cycle(&self, sh: &Shape, stack: &[String], depth: usize) -> Option<String> {
        if let Some(n) = sh.name.as_ref().filter(|n| stack.contains(n)) {
            return Some(n.clone());
        }
        let inner = match sh.ty() {
            "array" => sh.get("items"),
            "object" if sh.properties().is_none() => sh.map_values(),
            _ => None,
        };
        inner
            .filter(|_| depth < MAX_DEPTH)
            .and_then(|v| self.closes_cycle(&self.shape(v), stack, depth + 1))
    }

    /// What a nested block is called: `AppOut · 3 fields`, `each item: FieldError · 2 fields`.
    fn children_label(&self, sh: &Shape, depth: usize) -> String {
        let name = sh.name.as_deref().map(esc);
        if let Some(p) = sh.properties() {
            let n = p.len();
            let fields = if n == 1 {
                "1 field".to_owned()
            } else {
                format!("{n} fields")
            };
            return match name {
                Some(name) => format!("{name} · {fields}"),
                None => fields,
            };
        }
        if let Some(v) = sh.variants() {
            return format!(
                "{} · {} variants",
                name.unwrap_or_else(|| "one of".into()),
                v.len()
            );
        }
        if depth < MAX_DEPTH {
            if let Some(items) = sh.get("items").filter(|_| sh.ty() == "array") {
                return format!(
                    "each item: {}",
                    self.children_label(&self.shape(items), depth + 1)
                );
            }
            if let Some(values) = sh.map_values() {
                return format!(
                    "each value: {}",
                    self.children_label(&self.shape(values), depth + 1)
                );
            }
        }
        "fields".into()
    }

    /// The expanded contents of a schema: its fields, its items', its values' or its variants.
    /// `stack` holds the components being expanded, so a cycle is cut where it closes.
    fn children(
        &self,
        b: &mut String,
        sh: &Shape,
        stack: &mut Vec<String>,
        depth: usize,
        open: bool,
    ) {
        if depth > MAX_DEPTH {
            b.push_str("<p class=\"note\">(nested too deep to show)</p>");
            return;
        }
        if let Some(n) = &sh.name {
            if stack.contains(n) {
                let _ = write!(
                    b,
                    "<p class=\"note\">Recursive: the fields of <a href=\"#schema-{}\">{}</a>, as above.</p>",
                    slug(n),
                    esc(n)
                );
                return;
            }
            stack.push(n.clone());
        }
        if sh.properties().is_some() {
            b.push_str("<div class=\"fields\">");
            for (name, prop, required) in sh.ordered_properties() {
                self.field(b, name, prop, required, None, stack, depth + 1, open);
            }
            b.push_str("</div>");
            if sh.get("additionalProperties") == Some(&Value::Bool(false)) {
                b.push_str("<p class=\"note\">No other fields are accepted.</p>");
            }
        } else if let Some(variants) = sh.variants() {
            for (i, v) in variants.iter().enumerate() {
                let vs = self.shape(v);
                let _ = write!(
                    b,
                    "<div class=\"variant\"><div class=\"vh\">Option {}: {}</div>",
                    i + 1,
                    self.type_label(&vs, 0)
                );
                if let Some(d) = vs.str("description") {
                    b.push_str(&markdown(d));
                }
                b.push_str(&self.constraints(&vs, None));
                self.children(b, &vs, stack, depth + 1, open);
                b.push_str("</div>");
            }
        } else {
            let inner = match sh.ty() {
                "array" => sh.get("items"),
                "object" => sh.map_values(),
                _ => None,
            };
            if let Some(inner) = inner {
                let is = self.shape(inner);
                if self.has_children(&is, 0) {
                    self.children(b, &is, stack, depth + 1, open);
                }
            }
        }
        if sh.name.is_some() {
            stack.pop();
        }
    }

    /// One field (a property or a parameter): name, type, flags, description, constraints and
    /// its nested fields.
    #[allow(clippy::too_many_arguments)]
    fn field(
        &self,
        b: &mut String,
        name: &str,
        schema: &Value,
        required: bool,
        param: Option<&Value>,
        stack: &mut Vec<String>,
        depth: usize,
        open: bool,
    ) {
        let sh = self.shape(schema);
        let _ = write!(
            b,
            "<div class=\"field\"><div class=\"fh\"><code class=\"fn\">{}</code><span class=\"ty\">{}</span>",
            esc(name),
            self.type_label(&sh, 0)
        );
        if required {
            b.push_str("<span class=\"rq\">required</span>");
        }
        // A parameter's `null` is its absence, which `required` already tells.
        if sh.nullable && param.is_none() {
            b.push_str("<span class=\"nl\">nullable</span>");
        }
        if sh.get("readOnly") == Some(&Value::Bool(true)) {
            b.push_str("<span class=\"ro\">read-only</span>");
        }
        if sh.get("writeOnly") == Some(&Value::Bool(true)) {
            b.push_str("<span class=\"ro\">write-only</span>");
        }
        let deprecated = |v: Option<&Value>| v.is_some_and(|v| v["deprecated"] == true);
        if deprecated(param) || sh.get("deprecated") == Some(&Value::Bool(true)) {
            b.push_str("<span class=\"depb\">deprecated</span>");
        }
        b.push_str("</div>");
        let description = param
            .and_then(|p| p["description"].as_str())
            .or_else(|| sh.str("description"));
        if let Some(d) = description {
            let _ = write!(b, "<div class=\"fd\">{}</div>", markdown(d));
        }
        let example = param.and_then(|p| {
            p.get("example").or_else(|| {
                p["examples"]
                    .as_object()
                    .and_then(|e| e.values().next()?.get("value"))
            })
        });
        b.push_str(&self.constraints(&sh, example));
        if let Some(n) = self.closes_cycle(&sh, stack, 0) {
            let _ = write!(
                b,
                "<p class=\"note\">Recursive: the fields of <a href=\"#schema-{}\">{}</a>, as above.</p>",
                slug(&n),
                esc(&n)
            );
        } else if self.has_children(&sh, 0) {
            let _ = write!(
                b,
                "<details class=\"sub\"{}><summary>{}</summary>",
                if open { " open" } else { "" },
                self.children_label(&sh, 0)
            );
            self.children(b, &sh, stack, depth, open);
            b.push_str("</details>");
        }
        b.push_str("</div>");
    }

    /// A request or response body's schema: its description, then its fields (or its type and
    /// constraints when it has none).
    fn body_schema(&self, b: &mut String, schema: &Value, open: bool, with_description: bool) {
        let sh = self.shape(schema);
        if with_description && let Some(d) = sh.str("description") {
            let _ = write!(b, "<div class=\"fd\">{}</div>", markdown(d));
        }
        if self.has_children(&sh, 0) {
            if sh.properties().is_none() {
                let _ = write!(b, "<p class=\"ct\">{}</p>", self.type_label(&sh, 0));
                b.push_str(&self.constraints(&sh, None));
            }
            self.children(b, &sh, &mut Vec::new(), 0, open);
        } else if !sh.s.is_empty() {
            let _ = write!(b, "<p class=\"ct\">{}</p>", self.type_label(&sh, 0));
            b.push_str(&self.constraints(&sh, None));
        }
    }

    // -- Examples ------------------------------------------------------------------------------

    /// An example value of a schema: its own example, default, const or first enum value, or one
    /// built from its type. `all` includes optional fields (answers); without it only required
    /// fields, so a request example stays valid (optional fields may exclude each other), unless
    /// there are none: then the optional ones with an `example`.
    fn example(&self, v: &Value, all: bool, stack: &mut Vec<String>, depth: usize) -> Value {
        let sh = self.shape(v);
        if let Some(x) = explicit_example(&sh) {
            return x;
        }
        if depth > MAX_DEPTH || sh.name.as_ref().is_some_and(|n| stack.contains(n)) {
            return Value::Null;
        }
        if let Some(n) = &sh.name {
            stack.push(n.clone());
        }
        let out = match sh.ty() {
            "object" => {
                let mut m = Map::new();
                for (k, p, required) in sh.ordered_properties() {
                    if required || all {
                        m.insert(k.clone(), self.example(p, all, stack, depth + 1));
                    }
                }
                if m.is_empty() {
                    for (k, p, _) in sh.ordered_properties() {
                        if let Some(x) = self.shape(p).get("example") {
                            m.insert(k.clone(), x.clone());
                        }
                    }
                }
                if sh.properties().is_none()
                    && let Some(values) = sh.map_values()
                {
                    m.insert("key".into(), self.example(values, all, stack, depth + 1));
                }
                Value::Object(m)
            }
            "array" => match sh.get("items") {
                Some(items) => Value::Array(vec![self.example(items, all, stack, depth + 1)]),
                None => Value::Array(Vec::new()),
            },
            "oneOf" | "anyOf" => match sh.variants().and_then(|v| v.first()) {
                Some(first) => self.example(first, all, stack, depth + 1),
                None => Value::Null,
            },
            "string" => Value::String(
                match sh.str("format").unwrap_or("") {
                    "date-time" => "2025-01-31T12:00:00Z",
                    "date" => "2025-01-31",
                    "time" => "12:00:00Z",
                    "uuid" => "01940000-0000-7000-8000-000000000000",
                    "email" => "user@example.com",
                    "uri" | "url" => "https://example.com",
                    "password" => "********",
                    _ => "string",
                }
                .into(),
            ),
            "integer" | "number" => sh
                .get("minimum")
                .filter(|m| m.is_number())
                .cloned()
                .unwrap_or(Value::from(0)),
            "boolean" => Value::Bool(false),
            _ => Value::Null,
        };
        if sh.name.is_some() {
            stack.pop();
        }
        out
    }

    /// The example of a media type (its `example`, its first `examples` value, or its schema's).
    fn media_example(&self, media: &Value, all: bool) -> Option<Value> {
        if let Some(x) = media.get("example") {
            return Some(x.clone());
        }
        if let Some(x) = media["examples"]
            .as_object()
            .and_then(|e| e.values().next())
            .map(|e| self.deref(e))
            .and_then(|e| e.get("value"))
        {
            return Some(x.clone());
        }
        media
            .get("schema")
            .map(|s| self.example(s, all, &mut Vec::new(), 0))
    }

    // -- Page ----------------------------------------------------------------------------------

    fn groups(&self) -> Vec<Group<'a>> {
        let mut groups: Vec<Group<'a>> = self.spec["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| {
                        Some(Group {
                            name: t["name"].as_str()?.to_owned(),
                            description: t["description"].as_str(),
                            ops: Vec::new(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut anchors = HashSet::new();
        let Some(paths) = self.spec["paths"].as_object() else {
            return Vec::new();
        };
        for (path, item) in paths {
            let item = self.deref(item);
            let shared: Vec<&Value> = item["parameters"]
                .as_array()
                .map(|p| p.iter().map(|p| self.deref(p)).collect())
                .unwrap_or_default();
            for method in METHODS {
                let op = &item[method];
                if !op.is_object() {
                    continue;
                }
                let mut params: Vec<&Value> = op["parameters"]
                    .as_array()
                    .map(|p| p.iter().map(|p| self.deref(p)).collect())
                    .unwrap_or_default();
                for s in &shared {
                    if !params
                        .iter()
                        .any(|p| p["name"] == s["name"] && p["in"] == s["in"])
                    {
                        params.push(s);
                    }
                }
                let base = match op["operationId"].as_str() {
                    Some(id) => format!("op-{}", slug(id)),
                    None => format!("op-{method}-{}", slug(path.trim_matches('/'))),
                };
                let mut anchor = base.clone();
                let mut n = 2;
                while !anchors.insert(anchor.clone()) {
                    anchor = format!("{base}-{n}");
                    n += 1;
                }
                let title = match op["operationId"].as_str() {
                    Some(id) => humanize(id),
                    None => format!("{} {path}", method.to_ascii_uppercase()),
                };
                let tag = op["tags"][0].as_str().unwrap_or("other");
                let i = match groups.iter().position(|g| g.name == tag) {
                    Some(i) => i,
                    None => {
                        groups.push(Group {
                            name: tag.to_owned(),
                            description: None,
                            ops: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                groups[i].ops.push(Op {
                    path,
                    method,
                    op,
                    params,
                    anchor,
                    title,
                });
            }
        }
        for g in &mut groups {
            // Stable: the document's order within each kind.
            g.ops.sort_by_key(|op| crud_rank(op.method, op.path));
        }
        groups.retain(|g| !g.ops.is_empty());
        groups
    }

    fn render(&self) -> String {
        let groups = self.groups();
        let info = &self.spec["info"];
        let title = info["title"].as_str().unwrap_or("API");
        let version = info["version"].as_str().unwrap_or("");
        let schemes = self.spec["components"]["securitySchemes"].as_object();
        let schemas = self.spec["components"]["schemas"]
            .as_object()
            .filter(|s| !s.is_empty());
        let mut b = String::with_capacity(512 * 1024);

        // Contents.
        let _ = write!(
            b,
            "<nav class=\"toc\" aria-label=\"Contents\"><a class=\"brand\" href=\"#top\">{}</a><span class=\"ver\">{}</span>\
             <a class=\"top\" href=\"#top\">Introduction</a>",
            esc(title),
            if version.is_empty() {
                String::new()
            } else {
                format!("version {}", esc(version))
            }
        );
        if schemes.is_some_and(|s| !s.is_empty()) {
            b.push_str("<a class=\"top\" href=\"#authentication\">Authentication</a>");
        }
        for g in &groups {
            let _ = write!(
                b,
                "<div class=\"tg\"><a class=\"tgn\" href=\"#tag-{}\">{}</a><ul>",
                slug(&g.name),
                esc(&g.name)
            );
            for op in &g.ops {
                let _ = write!(
                    b,
                    "<li><a href=\"#{}\" title=\"{M} {}\"><span class=\"m m-{m}\">{M}</span><span{}>{}</span></a></li>",
                    op.anchor,
                    esc(op.path),
                    if op.op["deprecated"] == true {
                        " class=\"dep\""
                    } else {
                        ""
                    },
                    esc(&op.title),
                    m = op.method,
                    M = op.method.to_ascii_uppercase(),
                );
            }
            b.push_str("</ul></div>");
        }
        if schemas.is_some() {
            b.push_str("<div class=\"tg\"><a class=\"tgn\" href=\"#schemas\">Schemas</a></div>");
        }
        b.push_str("</nav><main>");

        // Introduction.
        let _ = write!(b, "<header class=\"intro\" id=\"top\"><h1>{}", esc(title));
        if !version.is_empty() {
            let _ = write!(b, "<span class=\"ver1\">{}</span>", esc(version));
        }
        b.push_str("</h1>");
        if let Some(d) = info["description"].as_str() {
            let _ = write!(b, "<div class=\"lead\">{}</div>", markdown(d));
        }
        b.push_str("<div class=\"meta\">");
        if let Some(v) = self.spec["openapi"].as_str() {
            let _ = write!(
                b,
                "<span>OpenAPI {}: <a href=\"/openapi.json\">/openapi.json</a></span>",
                esc(v)
            );
        }
        b.push_str("<span>Errors: <a href=\"/docs/problems\">problem types</a></span>");
        if let Some(l) = info["license"]["name"].as_str() {
            let _ = write!(b, "<span>License: {}</span>", esc(l));
        }
        if let Some(servers) = self.spec["servers"].as_array() {
            for s in servers.iter().filter_map(|s| s["url"].as_str()) {
                let _ = write!(b, "<span>Server: <code>{}</code></span>", esc(s));
            }
        }
        b.push_str("</div>");
        if let Some(schemes) = schemes.filter(|s| !s.is_empty()) {
            b.push_str("<div class=\"box\" id=\"authentication\">");
            for (name, s) in schemes {
                let _ = write!(
                    b,
                    "<h3>Authentication: <code>{}</code> <span class=\"ty\">{}</span></h3>",
                    esc(name),
                    esc(&scheme_label(s))
                );
                if let Some(d) = s["description"].as_str() {
                    b.push_str(&markdown(d));
                }
            }
            b.push_str("</div>");
        }
        b.push_str("</header>");

        // Operations, by tag.
        for g in &groups {
            let _ = write!(
                b,
                "<section class=\"tag\" id=\"tag-{}\"><h2>{}</h2>",
                slug(&g.name),
                esc(&capitalize(&g.name))
            );
            if let Some(d) = g.description {
                let _ = write!(b, "<div class=\"tagd\">{}</div>", markdown(d));
            }
            for op in &g.ops {
                self.operation(&mut b, op);
            }
            b.push_str("</section>");
        }

        // Schemas.
        if let Some(schemas) = schemas {
            b.push_str("<section class=\"schemas\" id=\"schemas\"><h2>Schemas</h2>");
            for (name, schema) in schemas {
                // Shown as itself, not as a link to itself; its own name starts the cycle guard.
                let mut sh = self.shape(schema);
                sh.name = None;
                let _ = write!(
                    b,
                    "<div class=\"schema\" id=\"schema-{}\"><h3>{}</h3><div class=\"ty\">{}</div>",
                    slug(name),
                    esc(name),
                    self.type_label(&sh, 0)
                );
                if let Some(d) = sh.str("description") {
                    b.push_str(&markdown(d));
                }
                b.push_str(&self.constraints(&sh, None));
                self.children(&mut b, &sh, &mut vec![name.clone()], 0, false);
                b.push_str("</div>");
            }
            b.push_str("</section>");
        }
        b.push_str("</main>");
        b
    }

    fn operation(&self, b: &mut String, op: &Op) {
        let o = op.op;
        let _ = write!(
            b,
            "<section class=\"op\" id=\"{}\"><div class=\"od\"><h3>{}",
            op.anchor,
            esc(&op.title)
        );
        if o["deprecated"] == true {
            b.push_str("<span class=\"depb\">deprecated</span>");
        }
        let _ = write!(
            b,
            "</h3><div class=\"ep\"><span class=\"m m-{m}\">{M}</span><code class=\"path\">{}</code></div>",
            path_html(op.path),
            m = op.method,
            M = op.method.to_ascii_uppercase(),
        );
        for key in ["summary", "description"] {
            if let Some(d) = o[key].as_str() {
                let _ = write!(b, "<div class=\"md\">{}</div>", markdown(d));
            }
        }
        b.push_str(&self.security(o));

        // Parameters, by location.
        for (loc, heading) in [
            ("path", "Path parameters"),
            ("query", "Query parameters"),
            ("header", "Header parameters"),
            ("cookie", "Cookie parameters"),
        ] {
            let ps: Vec<&&Value> = op.params.iter().filter(|p| p["in"] == loc).collect();
            if ps.is_empty() {
                continue;
            }
            let _ = write!(b, "<h4>{heading}</h4><div class=\"fields top\">");
            for p in ps {
                let empty = Value::Null;
                let schema = p.get("schema").unwrap_or(&empty);
                self.field(
                    b,
                    p["name"].as_str().unwrap_or(""),
                    schema,
                    p["required"] == true,
                    Some(*p),
                    &mut Vec::new(),
                    0,
                    true,
                );
            }
            b.push_str("</div>");
        }

        // Request body.
        let body = self.deref(&o["requestBody"]);
        if body.is_object() {
            let _ = write!(
                b,
                "<h4>Request body<span class=\"h4n\">{}</span></h4>",
                if body["required"] == true {
                    "required"
                } else {
                    "optional"
                }
            );
            if let Some(d) = body["description"].as_str() {
                let _ = write!(b, "<div class=\"fd\">{}</div>", markdown(d));
            }
            if let Some(content) = body["content"].as_object() {
                for (ct, media) in content {
                    let sh = self.shape(&media["schema"]);
                    let _ = write!(b, "<p class=\"ct\"><code>{}</code>", esc(ct));
                    if sh.name.is_some() {
                        let _ = write!(b, " · {}", self.type_label(&sh, 0));
                    }
                    if sh.nullable {
                        b.push_str(" · may be empty");
                    }
                    b.push_str("</p>");
                    self.body_schema(b, &media["schema"], true, true);
                }
            }
        }

        // Responses.
        if let Some(responses) = o["responses"].as_object() {
            b.push_str("<h4>Responses</h4><div class=\"resps\">");
            let mut shown = Vec::new();
            for (status, r) in responses {
                self.response(b, status, r, &mut shown);
            }
            b.push_str("</div>");
        }
        b.push_str("</div><aside class=\"ox\">");
        self.samples(b, op);
        b.push_str("</aside></section>");
    }

    /// One status of an operation: its code and description, and (expanded for successes) its
    /// headers and body fields. An error's named body (the shared problem) is a link instead.
    fn response(&self, b: &mut String, status: &str, r: &Value, shown: &mut Vec<(String, String)>) {
        let r = self.deref(r);
        let class = match status.as_bytes().first() {
            Some(b'2') => "s2",
            Some(b'3') => "s3",
            Some(b'4') => "s4",
            Some(b'5') => "s5",
            _ => "",
        };
        let success = class == "s2" || class == "s3";
        let content = r["content"].as_object().filter(|c| !c.is_empty());
        let headers = r["headers"].as_object().filter(|h| !h.is_empty());
        let mut kinds: Vec<String> = Vec::new();
        let mut bodies: Vec<(&String, &Value)> = Vec::new();
        for (ct, media) in content.into_iter().flatten() {
            let sh = self.shape(&media["schema"]);
            kinds.push(match &sh.name {
                Some(n) => format!("<a href=\"#schema-{}\">{}</a>", slug(n), esc(n)),
                None => esc(ct),
            });
            if success || (sh.name.is_none() && self.has_children(&sh, 0)) {
                bodies.push((ct, media));
            }
        }
        let head = format!(
            "<span class=\"sc {class}\">{}</span><span class=\"rd\">{}</span><span class=\"rt\">{}</span>",
            esc(status),
            // `400 invalid_request: ...` under the status 400: the number once is enough.
            short_markdown(
                r["description"]
                    .as_str()
                    .map(|d| d
                        .strip_prefix(status)
                        .filter(|d| d.starts_with(' '))
                        .unwrap_or(d))
                    .unwrap_or("")
            ),
            kinds.join(", ")
        );
        if bodies.is_empty() && headers.is_none() {
            let _ = write!(
                b,
                "<div class=\"resp\"><div class=\"rh\">{head}</div></div>"
            );
            return;
        }
        let _ = write!(
            b,
            "<details class=\"resp\"{}><summary>{head}</summary><div class=\"rb\">",
            if success { " open" } else { "" }
        );
        if let Some(headers) = headers {
            b.push_str("<p class=\"ct\">Headers</p><div class=\"fields top\">");
            for (name, h) in headers {
                let h = self.deref(h);
                let empty = Value::Null;
                self.field(
                    b,
                    name,
                    h.get("schema").unwrap_or(&empty),
                    h["required"] == true,
                    Some(h),
                    &mut Vec::new(),
                    0,
                    true,
                );
            }
            b.push_str("</div>");
        }
        for (ct, media) in bodies {
            let sh = self.shape(&media["schema"]);
            let _ = write!(b, "<p class=\"ct\"><code>{}</code>", esc(ct));
            if sh.name.is_some() {
                let _ = write!(b, " · {}", self.type_label(&sh, 0));
            }
            // A body already expanded for another status of this operation is named only.
            let earlier = sh.name.as_ref().and_then(|n| {
                shown
                    .iter()
                    .find(|(_, name)| name == n)
                    .map(|(status, _)| status.clone())
            });
            if let Some(earlier) = earlier {
                let _ = write!(b, " · fields as for {}</p>", esc(&earlier));
                continue;
            }
            b.push_str("</p>");
            self.body_schema(b, &media["schema"], true, true);
            if let Some(n) = sh.name {
                shown.push((status.to_owned(), n));
            }
        }
        b.push_str("</div></details>");
    }

    /// How an operation authenticates, from its `security` (or the document's).
    fn security(&self, o: &Value) -> String {
        let reqs = o
            .get("security")
            .or_else(|| self.spec.get("security"))
            .and_then(Value::as_array);
        let has_schemes = self.spec["components"]["securitySchemes"]
            .as_object()
            .is_some_and(|s| !s.is_empty());
        let Some(reqs) = reqs.filter(|r| {
            r.iter()
                .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
        }) else {
            return if has_schemes {
                "<p class=\"auth\"><b>No authentication.</b></p>".into()
            } else {
                String::new()
            };
        };
        let mut alternatives = Vec::new();
        for req in reqs.iter().filter_map(Value::as_object) {
            let all: Vec<String> = req
                .iter()
                .map(|(name, scopes)| {
                    let scheme = &self.spec["components"]["securitySchemes"][name];
                    let mut s = format!("<code>{}</code>", esc(name));
                    if scheme.is_object() {
                        let _ = write!(s, " ({})", esc(&scheme_label(scheme)));
                    }
                    let scopes: Vec<String> = scopes
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(|x| format!("<code>{}</code>", esc(x)))
                                .collect()
                        })
                        .unwrap_or_default();
                    if !scopes.is_empty() {
                        let _ = write!(s, " with {}", scopes.join(", "));
                    }
                    s
                })
                .collect();
            if all.is_empty() {
                alternatives.push("none".to_owned());
            } else {
                alternatives.push(all.join(" and "));
            }
        }
        format!(
            "<p class=\"auth\"><b>Authentication:</b> {} — see <a href=\"#authentication\">Authentication</a>.</p>",
            alternatives.join(" or ")
        )
    }

    /// The side panel: a `curl` call and an example answer.
    fn samples(&self, b: &mut String, op: &Op) {
        let o = op.op;
        let example_of = |p: &Value| -> Option<String> {
            let v = p
                .get("example")
                .or_else(|| p["schema"].get("example"))
                .or_else(|| p["schema"].get("default"))
                .or_else(|| p["schema"]["enum"].get(0))?;
            Some(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        };
        // The URL, path parameters filled with their examples.
        let mut url = String::from(op.path);
        for p in op.params.iter().filter(|p| p["in"] == "path") {
            if let (Some(name), Some(x)) = (p["name"].as_str(), example_of(p)) {
                url = url.replace(&format!("{{{name}}}"), &x);
            }
        }
        let query: Vec<String> = op
            .params
            .iter()
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .filter_map(|p| Some(format!("{}={}", p["name"].as_str()?, example_of(p)?)))
            .collect();
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let mut lines = vec![format!(
            "curl -X {} \"$BASE{url}\"",
            op.method.to_ascii_uppercase()
        )];
        for name in self.auth_schemes(o) {
            let scheme = &self.spec["components"]["securitySchemes"][name.as_str()];
            match (scheme["type"].as_str(), scheme["in"].as_str()) {
                (Some("http"), _)
                    if scheme["scheme"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case("basic")) =>
                {
                    lines.push("-u \"$USER:$PASSWORD\"".into());
                }
                (Some("http" | "oauth2" | "openIdConnect"), _) => {
                    lines.push("-H \"Authorization: Bearer $TOKEN\"".into());
                }
                (Some("apiKey"), Some("header")) => {
                    lines.push(format!(
                        "-H \"{}: $API_KEY\"",
                        scheme["name"].as_str().unwrap_or("X-API-Key")
                    ));
                }
                _ => {}
            }
        }
        for p in op
            .params
            .iter()
            .filter(|p| p["in"] == "header" && p["required"] == true)
        {
            if let (Some(name), Some(x)) = (p["name"].as_str(), example_of(p)) {
                lines.push(format!("-H \"{name}: {x}\""));
            }
        }
        let body = self.deref(&o["requestBody"]);
        if let Some((ct, media)) = body["content"].as_object().and_then(|c| {
            c.iter()
                .find(|(ct, _)| ct.contains("json"))
                .or_else(|| c.iter().next())
        }) {
            lines.push(format!("-H \"Content-Type: {ct}\""));
            if ct.contains("json")
                && let Some(x) = self.media_example(media, false)
            {
                let compact = x.to_string();
                let json = if compact.len() <= 48 {
                    compact
                } else {
                    serde_json::to_string_pretty(&x).unwrap_or(compact)
                };
                lines.push(format!("-d '{}'", json.replace('\'', "'\\''")));
            }
        }
        let _ = write!(
            b,
            "<div class=\"ex\"><div class=\"exh\"><span>Request</span><span>{} {}</span></div><pre class=\"wrap\"><code>{}</code></pre></div>",
            op.method.to_ascii_uppercase(),
            esc(op.path),
            esc(&lines.join(" \\\n  "))
        );

        // The first success answer.
        let Some((status, r)) = o["responses"]
            .as_object()
            .and_then(|r| r.iter().find(|(s, _)| s.starts_with('2')))
        else {
            return;
        };
        let r = self.deref(r);
        let content = r["content"].as_object().and_then(|c| c.iter().next());
        let (label, text) = match content {
            Some((ct, media)) if ct.contains("json") => {
                let x = self.media_example(media, true).unwrap_or(Value::Null);
                let mut html = String::new();
                json_html(&x, 0, &mut html);
                (ct.as_str(), html)
            }
            Some((ct, _)) => (
                ct.as_str(),
                format!("<span class=\"cm\">({})</span>", esc(ct)),
            ),
            None => ("", "<span class=\"cm\">(no body)</span>".to_owned()),
        };
        let _ = write!(
            b,
            "<div class=\"ex\"><div class=\"exh\"><span>Response {}</span><span>{}</span></div><pre><code>{text}</code></pre></div>",
            esc(status),
            esc(label)
        );
    }

    /// The names of the security schemes of an operation's first requirement.
    fn auth_schemes(&self, o: &Value) -> Vec<String> {
        o.get("security")
            .or_else(|| self.spec.get("security"))
            .and_then(Value::as_array)
            .and_then(|r| {
                r.iter()
                    .find_map(|r| r.as_object().filter(|r| !r.is_empty()))
            })
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Where an operation goes within its tag: create (or replace), read one, list, updates and
/// other actions, delete.
fn crud_rank(method: &str, path: &str) -> u8 {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let is_param = |s: Option<&str>| s.is_some_and(|s| s.starts_with('{') && s.ends_with('}'));
    let last = segments.next();
    let item = is_param(last);
    let action = !item && is_param(segments.next());
    // `POST .../users:batch`: a custom method creating in a collection.
    let batch = last.is_some_and(|l| l.contains(':'));
    match method {
        "put" if item => 0,
        "post" if batch || (!item && !action) => 0,
        "get" if item => 1,
        "get" => 2,
        "delete" => 4,
        _ => 3,
    }
}

/// Keywords of an outer layer that a `$ref`'s target does not override.
fn absorb(over: &mut Map<String, Value>, layer: Map<String, Value>) {
    for (k, v) in layer {
        over.entry(k).or_insert(v);
    }
}

/// Merges an `allOf` part into a schema: properties and `required` united, other keywords kept
/// when already set.
fn merge_all_of(m: &mut Map<String, Value>, part: Map<String, Value>) {
    for (k, v) in part {
        match (k.as_str(), m.get_mut(&k), v) {
            ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                for (pk, pv) in theirs {
                    mine.entry(pk).or_insert(pv);
                }
            }
            ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                for r in theirs {
                    if !mine.contains(&r) {
                        mine.push(r);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, v) => {
                m.insert(k, v);
            }
        }
    }
}

fn explicit_example(sh: &Shape) -> Option<Value> {
    sh.get("example")
        .or_else(|| sh.get("examples").and_then(|e| e.get(0)))
        .or_else(|| sh.get("const"))
        .or_else(|| sh.get("default"))
        .or_else(|| sh.get("enum").and_then(|e| e.get(0)))
        .cloned()
}

/// A `min`/`max` pair as one chip: `1 – 200`, `≥ 1`, `≤ 200`.
fn range(
    chip: &mut impl FnMut(&str, String),
    label: &str,
    min: Option<String>,
    max: Option<String>,
) {
    match (min, max) {
        (Some(a), Some(z)) if a == z => chip(label, format!("exactly {}", esc(&a))),
        (Some(a), Some(z)) => chip(label, format!("{} – {}", esc(&a), esc(&z))),
        (Some(a), None) => chip(label, format!("≥ {}", esc(&a))),
        (None, Some(z)) => chip(label, format!("≤ {}", esc(&z))),
        (None, None) => {}
    }
}

/// `HTTP bearer, JWT`, `API key in header X-Key`, ...
fn scheme_label(s: &Value) -> String {
    match s["type"].as_str().unwrap_or("") {
        "http" => {
            let scheme = s["scheme"].as_str().unwrap_or("");
            match s["bearerFormat"].as_str() {
                Some(f) => format!("HTTP {scheme}, {f}"),
                None => format!("HTTP {scheme}"),
            }
        }
        "apiKey" => format!(
            "API key in {} {}",
            s["in"].as_str().unwrap_or(""),
            s["name"].as_str().unwrap_or("")
        ),
        "oauth2" => "OAuth 2.0".into(),
        "openIdConnect" => "OpenID Connect".into(),
        other => other.to_owned(),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A path with its `{parameters}` highlighted.
fn path_html(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&esc(&rest[..open]));
        let _ = write!(
            out,
            "<span class=\"pp\">{}</span>",
            esc(&rest[open..open + close + 1])
        );
        rest = &rest[open + close + 1..];
    }
    out.push_str(&esc(rest));
    out
}

/// Pretty JSON as highlighted HTML.
fn json_html(v: &Value, indent: usize, out: &mut String) {
    let pad = |n: usize| "  ".repeat(n);
    match v {
        Value::Null | Value::Bool(_) => {
            let _ = write!(out, "<span class=\"jl\">{v}</span>");
        }
        Value::Number(n) => {
            let _ = write!(out, "<span class=\"jn\">{n}</span>");
        }
        Value::String(_) => {
            let _ = write!(out, "<span class=\"js\">{}</span>", esc(&v.to_string()));
        }
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        Value::Array(a) => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                json_html(x, indent + 1, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            let _ = write!(out, "{}]", pad(indent));
        }
        Value::Object(m) => {
            out.push_str("{\n");
            for (i, (k, x)) in m.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}<span class=\"jk\">{}</span>: ",
                    pad(indent + 1),
                    esc(&Value::String(k.clone()).to_string())
                );
                json_html(x, indent + 1, out);
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            let _ = write!(out, "{}}}", pad(indent));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
