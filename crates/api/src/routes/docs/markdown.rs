//! The Markdown subset of the reference page's descriptions: paragraphs, lists, code blocks,
//! headings, `code`, **bold**, *em* and links to http(s), mailto or relative URLs; it escapes as
//! it renders.

use super::*;

/// Renders a Markdown subset to HTML: paragraphs, `-`/`*`/`+` and numbered lists, fenced code
/// blocks and `#` headings, with [`inline`] spans. Anything else is text, and all text is
/// escaped.
pub(super) fn markdown(src: &str) -> String {
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

pub(super) fn flush_paragraph(out: &mut String, para: &mut Vec<&str>) {
    if !para.is_empty() {
        let _ = write!(out, "<p>{}</p>", inline(&para.join("\n")));
        para.clear();
    }
}

/// `# Title` (1-6 `#`s and a space) -> `Title`.
pub(super) fn heading(t: &str) -> Option<&str> {
    let level = t.bytes().take_while(|&b| b == b'#').count();
    (1..=6).contains(&level).then_some(())?;
    t[level..].strip_prefix(' ').map(str::trim)
}

/// A list item line -> (ordered, (number, the text after the marker)).
pub(super) fn list_item(t: &str) -> Option<(bool, (u64, &str))> {
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
pub(super) fn inline(s: &str) -> String {
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
pub(super) fn delimits(inner: &str) -> bool {
    !inner.is_empty()
        && !inner.starts_with(char::is_whitespace)
        && !inner.ends_with(char::is_whitespace)
}

/// The offset of the next run of exactly `n` backticks in `s`.
pub(super) fn backtick_run(s: &str, n: usize) -> Option<usize> {
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
pub(super) fn link(s: &str) -> Option<(&str, &str, usize)> {
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
pub(super) fn safe_url(url: &str) -> Option<String> {
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
pub(super) fn short_markdown(s: &str) -> String {
    let s = s.trim();
    let blocks = s.contains("\n\n")
        || s.lines()
            .any(|l| list_item(l.trim()).is_some() || l.trim_start().starts_with("```"));
    if blocks { markdown(s) } else { inline(s) }
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------
