//! Schemas on the reference page: `$ref`s resolved and `allOf`/nullable unwrapped into a
//! [`Shape`], field tables with types and constraints, nested objects expanded (cycles cut), and
//! examples built from the schemas.

use super::markdown::*;
use super::render::Renderer;
use super::*;

/// A schema with its `$ref`s resolved and nullability unwrapped: `s` holds the inner schema's
/// keywords with the outer layers' (a property's `description` beside its `$ref`) on top.
pub(super) struct Shape {
    pub(super) s: Map<String, Value>,
    /// The component it came from (the last `$ref` followed).
    pub(super) name: Option<String>,
    pub(super) nullable: bool,
}

impl Shape {
    pub(super) fn get(&self, k: &str) -> Option<&Value> {
        self.s.get(k)
    }
    pub(super) fn str(&self, k: &str) -> Option<&str> {
        self.s.get(k).and_then(Value::as_str)
    }
    /// The type keyword, or the one the other keywords imply.
    pub(super) fn ty(&self) -> &str {
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
    pub(super) fn properties(&self) -> Option<&Map<String, Value>> {
        self.get("properties")
            .and_then(Value::as_object)
            .filter(|p| !p.is_empty())
    }
    /// The schema of a map's values (`additionalProperties` as a schema).
    pub(super) fn map_values(&self) -> Option<&Value> {
        self.get("additionalProperties").filter(|v| v.is_object())
    }
    pub(super) fn variants(&self) -> Option<&Vec<Value>> {
        self.get("oneOf")
            .or_else(|| self.get("anyOf"))
            .and_then(Value::as_array)
            .filter(|v| !v.is_empty())
    }
    /// Property names, required ones first (in the document's order), then the rest.
    pub(super) fn ordered_properties(&self) -> Vec<(&String, &Value, bool)> {
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

impl<'a> Renderer<'a> {
    /// What a local `$ref` (`#/components/...`) points to.
    pub(super) fn lookup(&self, r: &str) -> Option<&'a Value> {
        r.strip_prefix('#').and_then(|p| self.spec.pointer(p))
    }

    /// Follows `$ref`s (bounded) to a non-reference object.
    pub(super) fn deref(&self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match v["$ref"].as_str().and_then(|r| self.lookup(r)) {
                Some(t) => v = t,
                None => break,
            }
        }
        v
    }

    pub(super) fn shape(&self, v: &Value) -> Shape {
        self.shape_at(v, 0)
    }

    pub(super) fn shape_at(&self, v: &Value, depth: usize) -> Shape {
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
    pub(super) fn type_label(&self, sh: &Shape, depth: usize) -> String {
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
    pub(super) fn constraints(&self, sh: &Shape, example: Option<&Value>) -> String {
        let c = self.chips(sh, example, "");
        if c.is_empty() {
            c
        } else {
            format!("<div class=\"cons\">{c}</div>")
        }
    }

    pub(super) fn chips(&self, sh: &Shape, example: Option<&Value>, prefix: &str) -> String {
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
    pub(super) fn has_children(&self, sh: &Shape, depth: usize) -> bool {
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
    pub(super) fn closes_cycle(
        &self,
        sh: &Shape,
        stack: &[String],
        depth: usize,
    ) -> Option<String> {
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
    pub(super) fn children_label(&self, sh: &Shape, depth: usize) -> String {
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
    pub(super) fn children(
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
    pub(super) fn field(
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
    pub(super) fn body_schema(
        &self,
        b: &mut String,
        schema: &Value,
        open: bool,
        with_description: bool,
    ) {
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
    pub(super) fn media_example(&self, media: &Value, all: bool) -> Option<Value> {
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
