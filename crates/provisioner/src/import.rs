//! `provisioner import`: onboards a file of users through a running service's bulk API.
//!
//! The file is CSV (a header row naming `external_id` and any of `scope_profile`, `scopes`,
//! `display_name`; `scopes` separated by spaces or `;`) or JSON lines (`.jsonl`, `.ndjson`: one
//! object per line with the same fields). Every row is checked first; a bad row is reported with
//! its line number and never sent. The good rows go in chunks to `users:batch`, and the jobs are
//! followed to their end with a progress bar. A row the service refuses at submission (an
//! unknown profile, a scope the tenant does not allow) is reported with its line number and the
//! rest of its chunk is sent again without it.
//!
//! Resumable: a state file (`<input>.import-state.json` unless `--state` says otherwise) records
//! each chunk's job as soon as it is accepted; a run after Ctrl-C or a crash follows the jobs
//! already submitted and submits only the chunks that have none. A chunk submitted just before a
//! crash, before its job was recorded, is submitted again: its users are then already
//! provisioned (with the same scopes) and count as done — never provisioned twice.
//!
//! The result file (CSV: `line, external_id, status, app_id, error`) lists every row:
//! `provisioned`, `failed` (with the problem code and detail), `cancelled` or `invalid`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use provisioner_core::ids::{ExternalId, ProfileName};
use provisioner_core::scope::ScopeSet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What to import, and where.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The service's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// A bearer token with `provisioner:write` (and `read`) on the tenant.
    pub token: String,
    /// The tenant.
    pub tenant: String,
    /// The input file.
    pub input: PathBuf,
    /// The result file (default: `<input>.result.csv`).
    pub result: Option<PathBuf>,
    /// The state file (default: `<input>.import-state.json`).
    pub state: Option<PathBuf>,
    /// Users per job (at most 1,000, so every error of a job is listed with it).
    pub chunk: usize,
    /// Whether to draw a progress bar (on stderr).
    pub progress: bool,
}

/// How an import ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows in the file.
    pub rows: usize,
    /// Rows skipped before sending (bad rows, and rows the service refused at submission).
    pub invalid: usize,
    /// Users provisioned (or already provisioned with the same scopes).
    pub provisioned: usize,
    /// Users that failed.
    pub failed: usize,
    /// Users not provisioned because a job was cancelled.
    pub cancelled: usize,
}

/// One good row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 1-based line number in the file.
    pub line: usize,
    /// The user.
    pub external_id: String,
    /// A profile, if given.
    pub scope_profile: Option<String>,
    /// Explicit scopes, if given.
    pub scopes: Option<Vec<String>>,
    /// A display name, if given.
    pub display_name: Option<String>,
}

impl Row {
    fn to_json(&self) -> Value {
        let mut v = json!({ "external_id": self.external_id });
        if let Some(p) = &self.scope_profile {
            v["scope_profile"] = json!(p);
        }
        if let Some(s) = &self.scopes {
            v["scopes"] = json!(s);
        }
        if let Some(d) = &self.display_name {
            v["display_name"] = json!(d);
        }
        v
    }
}

/// A row that is not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line number.
    pub line: usize,
    /// The external id, when there was one.
    pub external_id: String,
    /// Why.
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow {
    external_id: Option<String>,
    scope_profile: Option<String>,
    scopes: Option<Value>,
    display_name: Option<String>,
}

/// Reads and checks the input: the good rows, and the bad ones with their line numbers.
pub fn parse_input(path: &Path) -> anyhow::Result<(Vec<Row>, Vec<BadRow>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let raw: Vec<(usize, Result<RawRow, String>)> = match ext.as_str() {
        "jsonl" | "ndjson" | "json" => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                (
                    i + 1,
                    serde_json::from_str::<RawRow>(l).map_err(|e| format!("invalid JSON: {e}")),
                )
            })
            .collect(),
        _ => parse_csv(&text)?,
    };
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut seen = BTreeSet::new();
    for (line, r) in raw {
        match r.and_then(check_row) {
            Ok((external_id, scope_profile, scopes, display_name)) => {
                if !seen.insert(external_id.clone()) {
                    bad.push(BadRow {
                        line,
                        external_id,
                        reason: "appears earlier in the file".into(),
                    });
                    continue;
                }
                good.push(Row {
                    line,
                    external_id,
                    scope_profile,
                    scopes,
                    display_name,
                });
            }
            Err(reason) => bad.push(BadRow {
                line,
                external_id: String::new(),
                reason,
            }),
        }
    }
    Ok((good, bad))
}

type Checked = (String, Option<String>, Option<Vec<String>>, Option<String>);

fn check_row(r: RawRow) -> Result<Checked, String> {
    let id = r
        .external_id
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or("external_id is missing")?;
    ExternalId::parse(&id).map_err(|e| e.to_string())?;
    let profile = r
        .scope_profile
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(p) = &profile {
        ProfileName::parse(p).map_err(|e| e.to_string())?;
    }
    let scopes = match r.scopes {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(
            s.split([' ', ';', ','])
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ),
        Some(Value::Array(a)) => Some(
            a.into_iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or("scopes must be strings")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("scopes must be a list or a string".into()),
    };
    if let Some(s) = &scopes {
        ScopeSet::parse(s.iter()).map_err(|e| e.to_string())?;
    }
    if profile.is_some() && scopes.is_some() {
        return Err("give scope_profile or scopes, not both".into());
    }
    let name = r.display_name.filter(|s| !s.trim().is_empty());
    if let Some(n) = &name
        && (n.chars().count() > 200 || n.chars().any(char::is_control))
    {
        return Err(
            "display_name must be at most 200 characters without control characters".into(),
        );
    }
    Ok((id, profile, scopes, name))
}

fn parse_csv(text: &str) -> anyhow::Result<Vec<(usize, Result<RawRow, String>)>> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr.headers().context("reading the CSV header")?.clone();
    let known = ["external_id", "scope_profile", "scopes", "display_name"];
    if let Some(h) = headers.iter().find(|h| !known.contains(h)) {
        bail!("line 1: unknown column {h:?} (known: {})", known.join(", "));
    }
    if !headers.iter().any(|h| h == "external_id") {
        bail!("line 1: the header has no external_id column");
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        match rec {
            Ok(rec) => {
                let line = rec.position().map_or(0, |p| p.line() as usize);
                let get = |name: &str| {
                    headers
                        .iter()
                        .position(|h| h == name)
                        .and_then(|i| rec.get(i))
                        .map(str::to_owned)
                };
                out.push((
                    line,
                    Ok(RawRow {
                        external_id: get("external_id"),
                        scope_profile: get("scope_profile"),
                        scopes: get("scopes").map(Value::String),
                        display_name: get("display_name"),
                    }),
                ));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                out.push((line, Err(format!("invalid CSV: {e}"))));
            }
        }
    }
    Ok(out)
}

/// What a run remembers: each chunk's job, and the rows the service refused at submission.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    tenant: String,
    chunk: usize,
    /// Job id per chunk index.
    jobs: BTreeMap<usize, String>,
    /// Line -> reason, for rows refused at submission.
    refused: BTreeMap<usize, String>,
}

impl State {
    fn load(path: &Path) -> anyhow::Result<Option<State>> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(
                serde_json::from_str(&s).with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Written whole to a temporary file, then renamed: a crash leaves the old or the new.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Runs an import to its end (see the module documentation).
pub async fn run(opts: &ImportOptions) -> anyhow::Result<ImportSummary> {
    if !(1..=1000).contains(&opts.chunk) {
        bail!("--chunk must be 1-1000");
    }
    let state_path = opts
        .state
        .clone()
        .unwrap_or_else(|| with_suffix(&opts.input, ".import-state.json"));
    let result_path = opts
        .result
        .clone()
        .unwrap_or_else(|| with_suffix(&opts.input, ".result.csv"));
    let (rows, bad) = parse_input(&opts.input)?;
    for b in &bad {
        eprintln!("line {}: skipped: {}", b.line, b.reason);
    }
    let mut state = match State::load(&state_path)? {
        Some(s) if s.tenant == opts.tenant && s.chunk == opts.chunk => s,
        Some(_) => bail!(
            "{} belongs to another import (tenant or chunk size differ); remove it to start over",
            state_path.display()
        ),
        None => State {
            tenant: opts.tenant.clone(),
            chunk: opts.chunk,
            ..State::default()
        },
    };
    let client = Client::new(opts)?;
    let bar = progress_bar(opts.progress, rows.len() as u64);

    // Submit the chunks that have no job yet.
    let chunks: Vec<&[Row]> = rows.chunks(opts.chunk).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        if state.jobs.contains_key(&i) {
            continue;
        }
        loop {
            let send: Vec<&Row> = chunk
                .iter()
                .filter(|r| !state.refused.contains_key(&r.line))
                .collect();
            if send.is_empty() {
                break;
            }
            match client.submit(&send).await? {
                Submitted::Job(id) => {
                    state.jobs.insert(i, id);
                    state.save(&state_path)?;
                    break;
                }
                Submitted::Refused { position, reason } => {
                    let Some(row) = send.get(position) else {
                        bail!("the service refused the batch: {reason}");
                    };
                    eprintln!("line {}: skipped: {reason}", row.line);
                    state.refused.insert(row.line, reason);
                    state.save(&state_path)?;
                }
            }
        }
    }

    // Follow every job to its end.
    let mut finished: BTreeMap<String, Value> = BTreeMap::new();
    loop {
        let mut done = 0;
        let mut failed = 0;
        for id in state.jobs.values() {
            let job = match finished.get(id) {
                Some(j) => j.clone(),
                None => {
                    let j = client.job(id).await?;
                    if !j["finished_at"].is_null() {
                        finished.insert(id.clone(), j.clone());
                    }
                    j
                }
            };
            done += job["done"].as_u64().unwrap_or(0);
            failed += job["failed"].as_u64().unwrap_or(0) + job["cancelled"].as_u64().unwrap_or(0);
        }
        bar.set_position(done + failed);
        bar.set_message(format!("done {done}, failed {failed}"));
        if finished.len() == state.jobs.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bar.finish();

    // The result file: every row of the file.
    let apps = client.app_ids().await?;
    let mut outcome: BTreeMap<String, (String, String)> = BTreeMap::new();
    for job in finished.values() {
        for e in job["errors"].as_array().into_iter().flatten() {
            let id = e["external_id"].as_str().unwrap_or_default().to_owned();
            let why = format!(
                "{}: {}",
                e["code"].as_str().unwrap_or_default(),
                e["detail"].as_str().unwrap_or_default()
            );
            outcome.insert(id, ("failed".into(), why));
        }
    }
    let mut w = csv::Writer::from_path(&result_path)
        .with_context(|| format!("writing {}", result_path.display()))?;
    w.write_record(["line", "external_id", "status", "app_id", "error"])?;
    let mut summary = ImportSummary {
        rows: rows.len() + bad.len(),
        invalid: bad.len(),
        ..ImportSummary::default()
    };
    let mut lines: Vec<(usize, Vec<String>)> = bad
        .iter()
        .map(|b| {
            (
                b.line,
                vec![
                    b.external_id.clone(),
                    "invalid".into(),
                    String::new(),
                    b.reason.clone(),
                ],
            )
        })
        .collect();
    for r in &rows {
        let (status, app, error) = if let Some(reason) = state.refused.get(&r.line) {
            summary.invalid += 1;
            ("invalid", String::new(), reason.clone())
        } else if let Some((s, why)) = outcome.get(&r.external_id) {
            summary.failed += 1;
            (s.as_str(), String::new(), why.clone())
        } else if let Some(app) = apps.get(&r.external_id) {
            summary.provisioned += 1;
            ("provisioned", app.clone(), String::new())
        } else {
            summary.cancelled += 1;
            ("cancelled", String::new(), String::new())
        };
        lines.push((
            r.line,
            vec![r.external_id.clone(), status.into(), app, error],
        ));
    }
    lines.sort_by_key(|(l, _)| *l);
    for (line, rest) in lines {
        let mut rec = vec![line.to_string()];
        rec.extend(rest);
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(summary)
}

fn progress_bar(shown: bool, len: u64) -> indicatif::ProgressBar {
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} users ({per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

enum Submitted {
    Job(String),
    /// 422 naming a position in the batch (`users/3 (...)`).
    Refused {
        position: usize,
        reason: String,
    },
}

/// The few calls an import makes.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    tenant: String,
}

impl Client {
    fn new(opts: &ImportOptions) -> anyhow::Result<Self> {
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
            base: opts.url.trim_end_matches('/').to_owned(),
            token: opts.token.clone(),
            tenant: opts.tenant.clone(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let mut wait = Duration::from_millis(500);
        for attempt in 1..=8 {
            match req.try_clone().context("cloning a request")?.send().await {
                Ok(r) if r.status().as_u16() == 429 || r.status().as_u16() >= 502 => {
                    if attempt == 8 {
                        let s = r.status().as_u16();
                        return Ok((s, r.json().await.unwrap_or(Value::Null)));
                    }
                }
                Ok(r) => {
                    let s = r.status().as_u16();
                    return Ok((s, r.json().await.unwrap_or(Value::Null)));
                }
                Err(e) if attempt == 8 => return Err(e).context("calling the service"),
                Err(_) => {}
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        bail!("the service kept failing")
    }

    async fn submit(&self, rows: &[&Row]) -> anyhow::Result<Submitted> {
        let users: Vec<Value> = rows.iter().map(|r| r.to_json()).collect();
        let url = format!("{}/v1/tenants/{}/users:batch", self.base, self.tenant);
        let (status, body) = self
            .send(
                self.http
                    .post(url)
                    .bearer_auth(&self.token)
                    .json(&json!({ "users": users })),
            )
            .await?;
        match status {
            202 => Ok(Submitted::Job(
                body["job_id"]
                    .as_str()
                    .context("no job_id in the answer")?
                    .to_owned(),
            )),
            422 => {
                let detail = body["detail"].as_str().unwrap_or_default().to_owned();
                match position_of(&detail) {
                    Some(position) => Ok(Submitted::Refused {
                        position,
                        reason: detail,
                    }),
                    None => bail!("the service refused the batch: {detail}"),
                }
            }
            s => bail!(
                "the service answered {s}: {}",
                body["detail"].as_str().unwrap_or_default()
            ),
        }
    }

    async fn job(&self, id: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .send(
                self.http
                    .get(format!("{}/v1/jobs/{id}", self.base))
                    .bearer_auth(&self.token),
            )
            .await?;
        if status != 200 {
            bail!(
                "reading job {id}: {status} {}",
                body["detail"].as_str().unwrap_or_default()
            );
        }
        Ok(body)
    }

    /// Every user of the tenant with its app id (one paged listing, not one call per user).
    async fn app_ids(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/v1/tenants/{}/users?status=active&limit=1000",
                self.base, self.tenant
            );
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = self
                .send(self.http.get(url).bearer_auth(&self.token))
                .await?;
            if status != 200 {
                bail!(
                    "listing users: {status} {}",
                    body["detail"].as_str().unwrap_or_default()
                );
            }
            for u in body["items"].as_array().into_iter().flatten() {
                if let (Some(id), Some(app)) = (u["external_id"].as_str(), u["app"]["id"].as_str())
                {
                    out.insert(id.to_owned(), app.to_owned());
                }
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(out),
            }
        }
    }
}

/// The position a 422 names: `users/3 (alice): ...`.
fn position_of(detail: &str) -> Option<usize> {
    let rest = detail.split("users/").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn csv_rows_are_checked_with_their_line_numbers() {
        let (_d, p) = write(
            "users.csv",
            "external_id,scope_profile,scopes,display_name\n\
             alice@example.com,standard,,Alice\n\
             ,standard,,nobody\n\
             bob,,Predict;Inputs:Get,\n\
             carol,standard,Predict,\n\
             alice@example.com,,,again\n\
             dave,Not A Profile,,\n\
             eve,,,\n",
        );
        let (good, bad) = parse_input(&p).unwrap();
        let ids: Vec<(usize, &str)> = good
            .iter()
            .map(|r| (r.line, r.external_id.as_str()))
            .collect();
        assert_eq!(ids, vec![(2, "alice@example.com"), (4, "bob"), (8, "eve")]);
        assert_eq!(
            good[1].scopes,
            Some(vec!["Predict".into(), "Inputs:Get".into()])
        );
        assert_eq!(good[0].display_name.as_deref(), Some("Alice"));
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![3, 5, 6, 7], "{bad:?}");
        assert!(bad[1].reason.contains("not both"));
        assert!(bad[2].reason.contains("earlier"));
    }

    #[test]
    fn jsonl_rows_are_checked_and_an_unknown_csv_column_stops_the_import() {
        let (_d, p) = write(
            "users.jsonl",
            "{\"external_id\": \"a\", \"scopes\": [\"Predict\"]}\n\
             not json\n\
             \n\
             {\"external_id\": \"b\", \"surprise\": 1}\n\
             {\"external_id\": \"c\", \"scope_profile\": \"standard\"}\n",
        );
        let (good, bad) = parse_input(&p).unwrap();
        assert_eq!(good.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 5]);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 4]);
        let (_d, p) = write("u.csv", "external_id,password\na,secret\n");
        let err = parse_input(&p).unwrap_err().to_string();
        assert!(
            err.contains("unknown column") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn the_refused_position_is_read_from_the_problem_detail() {
        assert_eq!(
            position_of("users/12 (bob): scope profile x not found"),
            Some(12)
        );
        assert_eq!(position_of("something else"), None);
    }
}
