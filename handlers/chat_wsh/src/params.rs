//! The join parameters of `/chat?room=R&nick=N[&since=ID]`: percent-decoded, validated, and
//! refused (the handshake answers 400) when they break the rules below.
//!
//! * `nick`: required, 1–32 characters of ASCII letters, digits, `_` and `-`.
//! * `room`: optional (default `lobby`), 1–64 characters of the same set.
//! * `since`: optional, the `id` of the last message the client saw: 1–64 characters of the
//!   same set (ids are `<connection id>-<counter>`, e.g. `9f3a0c1d2e4b5a69-1f-3`; the host
//!   keeps ids of at most 64 bytes). A well-formed id the room's history does not hold is
//!   not refused: the client gets `{"type":"recovered","ok":false}`.
//!
//! Each key may appear once (a repeated `nick`, `room` or `since` is refused); other keys
//! are ignored. Values are percent-decoded, and `+` is a space (form encoding); a broken
//! escape (`%zz`, a lone `%`) or a value that is not UTF-8 is refused.

/// The room a client joins when the query names none.
pub(crate) const DEFAULT_ROOM: &str = "lobby";
/// The longest nick, in characters.
const MAX_NICK: usize = 32;
/// The longest room name, in characters.
const MAX_ROOM: usize = 64;
/// The longest `since` id, in characters (the host's limit for message ids).
const MAX_SINCE: usize = 64;

/// What a client joins with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinParams {
    /// The room (channel) name.
    pub(crate) room: String,
    /// The nick shown to the room.
    pub(crate) nick: String,
    /// The id of the last message the client saw, to replay what came after it.
    pub(crate) since: Option<String>,
}

/// Why the query was refused (the body of the 400 response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) String);

/// Parses and validates the query string (without `?`).
pub(crate) fn parse(query: Option<&str>) -> Result<JoinParams, Refusal> {
    let (mut room, mut nick, mut since) = (None, None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match decode(key)?.as_str() {
            "room" => &mut room,
            "nick" => &mut nick,
            "since" => &mut since,
            _ => continue,
        };
        if slot.replace(decode(value)?).is_some() {
            return Err(Refusal(format!("{key} given more than once")));
        }
    }
    let nick = nick.ok_or_else(|| Refusal("nick is required".to_owned()))?;
    check("nick", &nick, MAX_NICK)?;
    let room = room.unwrap_or_else(|| DEFAULT_ROOM.to_owned());
    check("room", &room, MAX_ROOM)?;
    if let Some(since) = &since {
        check("since", since, MAX_SINCE)?;
    }
    Ok(JoinParams { room, nick, since })
}

/// Checks that `value` is 1–`max` characters of ASCII letters, digits, `_` and `-`.
fn check(what: &str, value: &str, max: usize) -> Result<(), Refusal> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if value.is_empty() || value.len() > max || !value.chars().all(allowed) {
        return Err(Refusal(format!("{what} must be 1-{max} characters of A-Z a-z 0-9 _ -")));
    }
    Ok(())
}

/// Percent-decodes one query component (`+` is a space).
fn decode(component: &str) -> Result<String, Refusal> {
    let broken = || Refusal("malformed percent-encoding in the query".to_owned());
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(broken)?;
                let hex = std::str::from_utf8(hex).map_err(|_| broken())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| broken())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| broken())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(query: &str) -> JoinParams {
        parse(Some(query)).unwrap_or_else(|e| panic!("{query}: {e:?}"))
    }

    #[test]
    fn room_defaults_to_lobby_and_values_are_percent_decoded() {
        assert_eq!(ok("nick=alice"), JoinParams { room: "lobby".into(), nick: "alice".into(), since: None });
        let p = ok("room=r%5Fone&nick=b%2Dob&since=ab-1-2&other=x");
        assert_eq!((p.room.as_str(), p.nick.as_str(), p.since.as_deref()), ("r_one", "b-ob", Some("ab-1-2")));
    }

    #[test]
    fn bad_queries_are_refused() {
        for query in [
            "",
            "room=a",
            "nick=",
            "nick=a+b",
            "nick=a%20b",
            "nick=%zz",
            "nick=a%",
            "nick=%C3%A9",
            "nick=<b>",
            "nick=a&nick=b",
            "nick=a&room=",
            "nick=a&room=a.b",
            "nick=a&since=",
            "nick=a&since=a%2Fb",
            &format!("nick=a&since={}", "s".repeat(65)),
        ] {
            assert!(parse(Some(query)).is_err(), "{query} was accepted");
        }
        assert!(parse(None).is_err());
        assert!(parse(Some(&format!("nick={}", "n".repeat(32)))).is_ok());
        assert!(parse(Some(&format!("nick={}", "n".repeat(33)))).is_err());
        assert!(parse(Some(&format!("nick=a&room={}", "r".repeat(64)))).is_ok());
        assert!(parse(Some(&format!("nick=a&room={}", "r".repeat(65)))).is_err());
    }
}
