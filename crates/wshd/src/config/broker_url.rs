//! The broker's URL as text: its checks at load, and its redacted form for logs and error
//! messages (a Redis password never leaves the configuration in clear: see
//! `docs/scale-out.md`, "Securing the Redis link").

/// The schemes accepted: plain and TLS.
const SCHEMES: [&str; 2] = ["redis://", "rediss://"];

/// What replaces a password (or a lone user-info part) in a redacted URL.
const HIDDEN: &str = "***";

/// Checks `url`: `redis://` or `rediss://`, a host, no `#fragment` (redis-rs reads
/// `#insecure` as "do not verify the server's certificate", which wshd refuses). Error
/// messages show the URL redacted.
pub(super) fn check(url: &str) -> Result<(), String> {
    let shown = redact(url);
    let Some(rest) = SCHEMES.iter().find_map(|scheme| url.strip_prefix(scheme)) else {
        let shown = if url.contains("://") { format!("`{shown}`") } else { "the value".to_owned() };
        return Err(format!("{shown} is not a Redis URL: redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]"));
    };
    if rest.is_empty() {
        return Err(format!("`{shown}` has no host: redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]"));
    }
    if rest.rsplit_once('@').map_or(rest, |(_, host)| host).contains('#') {
        return Err(format!(
            "`{shown}`: a URL fragment (such as #insecure) is refused: the server's certificate is \
             always verified (a private CA: `[broker] tls_ca_file`)"
        ));
    }
    Ok(())
}

/// Whether `url` asks for TLS (`rediss://`).
pub(super) fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// `url` with its password replaced by `***` (`redis://user:***@host:6379/0`); a user-info
/// part without a colon is replaced whole (it may be a password put in the wrong place).
/// Everything up to the last `@` counts as user-info, so a password with an unescaped `/`,
/// `#` or `@` is hidden too (at worst, more is hidden than needed).
pub(super) fn redact(url: &str) -> String {
    // Not a URL: the whole text may be a secret.
    let Some((scheme, rest)) = url.split_once("://") else { return HIDDEN.to_owned() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{HIDDEN}@{host}"),
        None => format!("{scheme}://{HIDDEN}@{host}"),
    }
}

/// `text` with every occurrence of `secret` replaced by `***` (an empty secret changes
/// nothing): for error messages of the Redis client, in case one quotes the password.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() { text.to_owned() } else { text.replace(secret, HIDDEN) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_the_rest_kept() {
        let cases = [
            ("redis://:s3cret@10.0.0.5:6380/2", "redis://:***@10.0.0.5:6380/2"),
            ("rediss://app:s3cret@redis.internal:6379/0", "rediss://app:***@redis.internal:6379/0"),
            ("redis://s3cret@host", "redis://***@host"),
            ("redis://:pa/ss@w#rd@host:1/0", "redis://:***@host:1/0"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            ("rediss://host", "rediss://host"),
            ("not a url with s3cret@x", "***"),
            ("s3cret", "***"),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
            assert!(!redact(url).contains("s3cret") && !redact(url).contains("ss@w"), "{url}");
        }
    }

    #[test]
    fn checks_refuse_other_schemes_and_fragments_without_showing_the_password() {
        assert_eq!(check("redis://:pw@host:6379/0"), Ok(()));
        assert_eq!(check("rediss://user:pw@host/1"), Ok(()));
        assert_eq!(check("rediss://:pa#ss@host"), Ok(()), "a # in the password is no fragment");
        for bad in ["http://:s3cret@x", "rediss://:s3cret@host/#insecure", "redis://", "s3cret"] {
            let e = check(bad).expect_err(bad);
            assert!(!e.contains("s3cret"), "{e}");
        }
        assert!(check("rediss://host/#insecure").expect_err("refused").contains("#insecure"));
        assert!(is_tls("rediss://h") && !is_tls("redis://h"));
    }

    #[test]
    fn scrub_hides_a_secret_in_any_text() {
        assert_eq!(scrub("AUTH failed for s3cret", "s3cret"), "AUTH failed for ***");
        assert_eq!(scrub("nothing", ""), "nothing");
    }
}
