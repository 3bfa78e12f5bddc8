//! `provisioner token`: mints an HS256 token with the configured secret (bootstrap, demos, tests).

use anyhow::{Context, bail};
use provisioner_api::{Claims, mint_hs256};
use secrecy::SecretString;

/// Parses a TTL such as `90s`, `15m`, `1h`, `7d` or plain seconds.
pub fn parse_ttl(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = num.parse().with_context(|| format!("invalid ttl {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("invalid ttl unit in {s:?}: use s, m, h or d"),
    };
    if secs <= 0 || secs > 366 * 86_400 {
        bail!("ttl must be between 1 second and 366 days");
    }
    Ok(secs)
}

/// Mints a token for `sub` with `scope` (space-separated), optionally bound to `tenant`.
pub fn mint(
    secret: &SecretString,
    scope: &str,
    tenant: Option<&str>,
    ttl_secs: i64,
    sub: &str,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now + ttl_secs,
        iat: Some(now),
        scope: scope.to_owned(),
        scp: String::new(),
        tenant: tenant.map(str::to_owned),
        iss: issuer.map(str::to_owned),
        aud: audience.map(str::to_owned),
    };
    mint_hs256(secret, &claims).map_err(|e| anyhow::anyhow!("minting the token: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("15m").unwrap(), 900);
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
