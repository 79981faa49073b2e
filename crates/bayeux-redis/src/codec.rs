//! How log records and session records are written in Redis.
//!
//! A log record is one stream entry whose fields name its kind (`k`) and carry its parts; a
//! message is stored as the JSON text it is sent as, so reading it back costs no encoding.
//!
//! | `k` | record | other fields |
//! |---|---|---|
//! | `p` | publish | `c` channel, `m` message, `s` publisher to skip (optional) |
//! | `d` | deliver | `to` session, `m` message |
//! | `s` / `u` | subscribe / unsubscribe | `cid` session, `c` JSON array of channels; for `s`, `rp` the history to replay, `{"/chan": -2 or id}` (optional) |
//! | `r` | remove | `cid` session |
//! | `pr` | presence | `usr` user, `on` `1` (came online) or `0` (went offline), `v` version |
//! | `du` | deliver to a user | `usr` user, `m` message |
//! | `mv` | move | `cid`, `e` epoch, `from` node |
//! | `rl` | released | `cid`, `e` epoch, `rec` record as JSON (optional) |
//!
//! Every entry also has `t`, when it was appended (milliseconds since the Unix epoch).

use std::collections::HashMap;

use bayeux_core::{BrowserId, Entry, ReplayFrom, SessionRecord};
use bayeux_message::{ChannelName, ClientId, EncodedMessage};
use bayeux_server::backplane::{LogRecord, NodeId};
use serde_json::{json, Map, Value};

/// The fields of a stream entry for `record`, in order.
pub(crate) fn record_fields(record: &LogRecord, at_ms: u64) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = match record {
        LogRecord::Entry(Entry::Publish {
            channel,
            message,
            skip,
        }) => {
            let mut f = vec![
                ("k", "p".to_owned()),
                ("c", channel.as_str().to_owned()),
                ("m", message.as_str().to_owned()),
            ];
            if let Some(skip) = skip {
                f.push(("s", skip.as_str().to_owned()));
            }
            f
        }
        LogRecord::Entry(Entry::Deliver { to, message }) => vec![
            ("k", "d".to_owned()),
            ("to", to.as_str().to_owned()),
            ("m", message.as_str().to_owned()),
        ],
        LogRecord::Entry(Entry::Subscribe {
            session,
            channels,
            replay,
        }) => {
            let mut f = vec![
                ("k", "s".to_owned()),
                ("cid", session.as_str().to_owned()),
                ("c", channels_json(channels)),
            ];
            if !replay.is_empty() {
                f.push(("rp", replay_json(replay)));
            }
            f
        }
        LogRecord::Entry(Entry::Unsubscribe { session, channels }) => vec![
            ("k", "u".to_owned()),
            ("cid", session.as_str().to_owned()),
            ("c", channels_json(channels)),
        ],
        LogRecord::Entry(Entry::Remove { session }) => {
            vec![("k", "r".to_owned()), ("cid", session.as_str().to_owned())]
        }
        LogRecord::Entry(Entry::Presence {
            user,
            online,
            version,
        }) => vec![
            ("k", "pr".to_owned()),
            ("usr", user.clone()),
            ("on", if *online { "1" } else { "0" }.to_owned()),
            ("v", version.to_string()),
        ],
        LogRecord::Entry(Entry::DeliverUser { user, message }) => vec![
            ("k", "du".to_owned()),
            ("usr", user.clone()),
            ("m", message.as_str().to_owned()),
        ],
        LogRecord::Move {
            session,
            epoch,
            from,
        } => vec![
            ("k", "mv".to_owned()),
            ("cid", session.as_str().to_owned()),
            ("e", epoch.to_string()),
            ("from", from.as_str().to_owned()),
        ],
        LogRecord::Released {
            session,
            epoch,
            record,
        } => {
            let mut f = vec![
                ("k", "rl".to_owned()),
                ("cid", session.as_str().to_owned()),
                ("e", epoch.to_string()),
            ];
            if let Some(record) = record {
                f.push(("rec", session_json(record).to_string()));
            }
            f
        }
        other => {
            // A record kind this version does not know how to write: nothing readable.
            tracing::error!(?other, "log record not encodable");
            vec![("k", "?".to_owned())]
        }
    };
    fields.push(("t", at_ms.to_string()));
    fields
}

/// Reads a stream entry's fields back; `Err` says what is wrong with them.
pub(crate) fn parse_record(fields: &HashMap<String, String>) -> Result<LogRecord, String> {
    let get = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| format!("field {name:?} missing"))
    };
    let channel = |name: &str| ChannelName::parse(name).map_err(|e| format!("{name:?}: {e:?}"));
    let session = || get("cid").map(|c| ClientId::new(c.as_str()));
    let epoch = || get("e")?.parse::<u64>().map_err(|e| format!("epoch: {e}"));
    let record = match get("k")?.as_str() {
        "p" => LogRecord::Entry(Entry::Publish {
            channel: channel(get("c")?)?,
            message: EncodedMessage::from_json_text(get("m")?.as_str()),
            skip: fields.get("s").map(|s| ClientId::new(s.as_str())),
        }),
        "d" => LogRecord::Entry(Entry::Deliver {
            to: ClientId::new(get("to")?.as_str()),
            message: EncodedMessage::from_json_text(get("m")?.as_str()),
        }),
        kind @ ("s" | "u") => {
            let names: Vec<String> =
                serde_json::from_str(get("c")?).map_err(|e| format!("channels: {e}"))?;
            let channels = names
                .iter()
                .map(|n| channel(n))
                .collect::<Result<Vec<_>, _>>()?;
            let session = session()?;
            LogRecord::Entry(if kind == "s" {
                let replay = match fields.get("rp") {
                    Some(text) => parse_replay(text)?,
                    None => Vec::new(),
                };
                Entry::Subscribe {
                    session,
                    channels,
                    replay,
                }
            } else {
                Entry::Unsubscribe { session, channels }
            })
        }
        "r" => LogRecord::Entry(Entry::Remove {
            session: session()?,
        }),
        "pr" => LogRecord::Entry(Entry::Presence {
            user: get("usr")?.clone(),
            online: match get("on")?.as_str() {
                "1" => true,
                "0" => false,
                other => return Err(format!("presence: {other:?}")),
            },
            version: get("v")?
                .parse()
                .map_err(|e| format!("presence version: {e}"))?,
        }),
        "du" => LogRecord::Entry(Entry::DeliverUser {
            user: get("usr")?.clone(),
            message: EncodedMessage::from_json_text(get("m")?.as_str()),
        }),
        "mv" => LogRecord::Move {
            session: session()?,
            epoch: epoch()?,
            from: NodeId::new(get("from")?.as_str()),
        },
        "rl" => {
            let session = session()?;
            let record = match fields.get("rec") {
                Some(text) => {
                    let value: Value =
                        serde_json::from_str(text).map_err(|e| format!("record: {e}"))?;
                    Some(session_from_json(session.clone(), &value)?)
                }
                None => None,
            };
            LogRecord::Released {
                session,
                epoch: epoch()?,
                record,
            }
        }
        other => return Err(format!("unknown record kind {other:?}")),
    };
    Ok(record)
}

/// A subscribe's replay requests as a JSON object: `-2` for everything retained, else the id
/// to replay after.
fn replay_json(replay: &[(ChannelName, ReplayFrom)]) -> String {
    let map: Map<String, Value> = replay
        .iter()
        .map(|(channel, from)| {
            let value = match from {
                ReplayFrom::Retained => Value::from(-2),
                ReplayFrom::After(id) => Value::from(*id),
            };
            (channel.as_str().to_owned(), value)
        })
        .collect();
    Value::Object(map).to_string()
}

fn parse_replay(text: &str) -> Result<Vec<(ChannelName, ReplayFrom)>, String> {
    let map: Map<String, Value> = serde_json::from_str(text).map_err(|e| format!("replay: {e}"))?;
    map.iter()
        .map(|(name, value)| {
            let channel = ChannelName::parse(name).map_err(|e| format!("{name:?}: {e:?}"))?;
            let from = match (value.as_i64(), value.as_u64()) {
                (Some(-2), _) => ReplayFrom::Retained,
                (_, Some(id)) => ReplayFrom::After(id),
                _ => return Err(format!("replay of {name:?}: {value}")),
            };
            Ok((channel, from))
        })
        .collect()
}

fn channels_json(channels: &[ChannelName]) -> String {
    Value::Array(channels.iter().map(|c| json!(c.as_str())).collect()).to_string()
}

/// A session record as JSON (`browser`, `bound`, `ack`, `attrs`, `subs`, `pos`).
pub(crate) fn session_json(record: &SessionRecord) -> Value {
    json!({
        "browser": record.browser.as_ref().map(BrowserId::as_str),
        "bound": record.cookie_bound,
        "ack": record.ack,
        "attrs": Value::Object(record.attributes.clone()),
        "subs": subscriptions_json(record),
        "pos": record.position,
    })
}

/// The subscriptions of a record as a JSON array of `[channel, position]`.
pub(crate) fn subscriptions_json(record: &SessionRecord) -> Value {
    Value::Array(
        record
            .subscriptions
            .iter()
            .map(|(c, p)| json!([c.as_str(), p]))
            .collect(),
    )
}

/// Reads a session record from its JSON form.
pub(crate) fn session_from_json(
    client_id: ClientId,
    value: &Value,
) -> Result<SessionRecord, String> {
    let subs = value["subs"].as_array().cloned().unwrap_or_default();
    let mut subscriptions = Vec::with_capacity(subs.len());
    for sub in &subs {
        let (Some(name), Some(from)) = (sub[0].as_str(), sub[1].as_u64()) else {
            return Err(format!("subscription {sub}"));
        };
        let name = ChannelName::parse(name).map_err(|e| format!("{name:?}: {e:?}"))?;
        subscriptions.push((name, from));
    }
    Ok(SessionRecord {
        client_id,
        browser: value["browser"].as_str().map(BrowserId::new),
        cookie_bound: value["bound"].as_bool().unwrap_or(false),
        ack: value["ack"].as_bool().unwrap_or(false),
        attributes: value["attrs"].as_object().cloned().unwrap_or_else(Map::new),
        subscriptions,
        position: value["pos"].as_u64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(record: LogRecord) {
        let fields: HashMap<String, String> = record_fields(&record, 42)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(fields["t"], "42");
        assert_eq!(parse_record(&fields), Ok(record));
    }

    #[test]
    fn every_record_kind_reads_back_as_written() {
        let chat = ChannelName::parse("/chat/**").unwrap();
        let message = EncodedMessage::from_json_text(r#"{"channel":"/chat/a","data":"\u00e9"}"#);
        round_trip(LogRecord::Entry(Entry::Publish {
            channel: ChannelName::parse("/chat/a").unwrap(),
            message: message.clone(),
            skip: Some(ClientId::new("c1")),
        }));
        round_trip(LogRecord::Entry(Entry::Publish {
            channel: ChannelName::parse("/chat/a").unwrap(),
            message: message.clone(),
            skip: None,
        }));
        round_trip(LogRecord::Entry(Entry::Deliver {
            to: ClientId::new("c2"),
            message: message.clone(),
        }));
        round_trip(LogRecord::Entry(Entry::DeliverUser {
            user: "alice".into(),
            message,
        }));
        for online in [true, false] {
            round_trip(LogRecord::Entry(Entry::Presence {
                user: "b\u{f6}b".into(),
                online,
                version: 7,
            }));
        }
        round_trip(LogRecord::Entry(Entry::Subscribe {
            session: ClientId::new("c3"),
            channels: vec![chat.clone(), ChannelName::parse("/a/b").unwrap()],
            replay: Vec::new(),
        }));
        round_trip(LogRecord::Entry(Entry::Subscribe {
            session: ClientId::new("c3"),
            channels: vec![
                ChannelName::parse("/a/b").unwrap(),
                ChannelName::parse("/a/c").unwrap(),
            ],
            replay: vec![
                (ChannelName::parse("/a/b").unwrap(), ReplayFrom::Retained),
                (
                    ChannelName::parse("/a/c").unwrap(),
                    ReplayFrom::After(1 << 52),
                ),
            ],
        }));
        round_trip(LogRecord::Entry(Entry::Unsubscribe {
            session: ClientId::new("c3"),
            channels: vec![chat.clone()],
        }));
        round_trip(LogRecord::Entry(Entry::Remove {
            session: ClientId::new("c4"),
        }));
        round_trip(LogRecord::Move {
            session: ClientId::new("c5"),
            epoch: 7,
            from: NodeId::new("a#01"),
        });
        round_trip(LogRecord::Released {
            session: ClientId::new("c5"),
            epoch: 7,
            record: None,
        });
        let mut attributes = Map::new();
        attributes.insert("user".into(), json!("ann"));
        round_trip(LogRecord::Released {
            session: ClientId::new("c6"),
            epoch: 8,
            record: Some(SessionRecord {
                client_id: ClientId::new("c6"),
                browser: Some(BrowserId::new("b1")),
                cookie_bound: true,
                ack: true,
                attributes,
                subscriptions: vec![(chat, 12)],
                position: 99,
            }),
        });
    }

    #[test]
    fn unreadable_entries_say_what_is_wrong() {
        let fields = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            parse_record(&fields(&[("k", "zz")])),
            Err("unknown record kind \"zz\"".into())
        );
        assert_eq!(
            parse_record(&fields(&[("k", "p"), ("c", "/x")])),
            Err("field \"m\" missing".into())
        );
        assert!(parse_record(&fields(&[("k", "p"), ("c", "no slash"), ("m", "{}")])).is_err());
    }
}
