//! The reference itself: operations grouped by tag, their parameters, bodies and responses,
//! schemas expanded field by field, and the side panel's examples.

use super::markdown::*;
use super::*;

/// A schema with its `$ref`s resolved and nullability unwrapped: `s` holds the inner schema's
/// keywords with the outer layers' (a property's `description` beside its `$ref`) on top.
pub(super) struct Shape {
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

pub(super) fn json_type(v: &Value) -> &'static str {
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

pub(super) fn is_null_schema(v: &Value) -> bool {
    v["type"] == "null" || v["enum"].as_array().is_some_and(|e| e == &[Value::Null])
}

/// A short, single-line rendering of a JSON value (strings quoted, long ones cut).
pub(super) fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        let cut: String = s.chars().take(157).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// `#/components/schemas/TenantIn` -> `TenantIn`.
pub(super) fn ref_name(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

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
    pub(super) fn example(
        &self,
        v: &Value,
        all: bool,
        stack: &mut Vec<String>,
        depth: usize,
    ) -> Value {
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
pub(super) fn crud_rank(method: &str, path: &str) -> u8 {
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
pub(super) fn absorb(over: &mut Map<String, Value>, layer: Map<String, Value>) {
    for (k, v) in layer {
        over.entry(k).or_insert(v);
    }
}

/// Merges an `allOf` part into a schema: properties and `required` united, other keywords kept
/// when already set.
pub(super) fn merge_all_of(m: &mut Map<String, Value>, part: Map<String, Value>) {
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

pub(super) fn explicit_example(sh: &Shape) -> Option<Value> {
    sh.get("example")
        .or_else(|| sh.get("examples").and_then(|e| e.get(0)))
        .or_else(|| sh.get("const"))
        .or_else(|| sh.get("default"))
        .or_else(|| sh.get("enum").and_then(|e| e.get(0)))
        .cloned()
}

/// A `min`/`max` pair as one chip: `1 – 200`, `≥ 1`, `≤ 200`.
pub(super) fn range(
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
