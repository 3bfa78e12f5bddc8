//! The reference itself: operations grouped by tag, their parameters, bodies and responses,
//! and the side panel's `curl` and answer examples (schemas: [`super::schema`]).

use super::markdown::*;
use super::*;

/// An `id` attribute value: letters, digits, `-` and `_` only.
pub(super) fn slug(s: &str) -> String {
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
pub(super) fn humanize(id: &str) -> String {
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
pub(super) struct Op<'a> {
    path: &'a str,
    method: &'static str,
    op: &'a Value,
    params: Vec<&'a Value>,
    anchor: String,
    title: String,
}

/// The operations of one tag.
pub(super) struct Group<'a> {
    name: String,
    description: Option<&'a str>,
    ops: Vec<Op<'a>>,
}

/// Renders the reference page's body (contents, operations, schemas) from a parsed document.
pub(super) fn render_reference(spec: &Value) -> String {
    Renderer { spec }.render()
}

pub(super) struct Renderer<'a> {
    pub(super) spec: &'a Value,
}

impl<'a> Renderer<'a> {
    // -- Page ----------------------------------------------------------------------------------

    pub(super) fn groups(&self) -> Vec<Group<'a>> {
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
            g.ops.sort_by_key(|op| {
                crud_rank(op.method, op.path, op.op["responses"]["201"].is_object())
            });
        }
        groups.retain(|g| !g.ops.is_empty());
        groups
    }

    pub(super) fn render(&self) -> String {
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

    pub(super) fn operation(&self, b: &mut String, op: &Op) {
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
    pub(super) fn response(
        &self,
        b: &mut String,
        status: &str,
        r: &Value,
        shown: &mut Vec<(String, String)>,
    ) {
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
    pub(super) fn security(&self, o: &Value) -> String {
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
    pub(super) fn samples(&self, b: &mut String, op: &Op) {
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
    pub(super) fn auth_schemes(&self, o: &Value) -> Vec<String> {
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
/// other actions, delete. A `POST` answering 201 creates, wherever its path is
/// (`/v1/tenants/{tenant_id}/webhook-endpoints` looks like an action on the tenant).
pub(super) fn crud_rank(method: &str, path: &str, creates: bool) -> u8 {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let is_param = |s: Option<&str>| s.is_some_and(|s| s.starts_with('{') && s.ends_with('}'));
    let last = segments.next();
    let item = is_param(last);
    let action = !item && is_param(segments.next());
    // `POST .../users:batch`: a custom method creating in a collection.
    let batch = last.is_some_and(|l| l.contains(':'));
    match method {
        "put" if item => 0,
        "post" if creates || batch || (!item && !action) => 0,
        "get" if item => 1,
        "get" => 2,
        "delete" => 4,
        _ => 3,
    }
}

/// `HTTP bearer, JWT`, `API key in header X-Key`, ...
pub(super) fn scheme_label(s: &Value) -> String {
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

pub(super) fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A path with its `{parameters}` highlighted.
pub(super) fn path_html(path: &str) -> String {
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
pub(super) fn json_html(v: &Value, indent: usize, out: &mut String) {
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
