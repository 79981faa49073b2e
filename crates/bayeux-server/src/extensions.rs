//! Built-in extensions that read the wall clock: `timesync` and `timestamp`.
//!
//! (The `ack` extension is pure protocol state and lives in the core: [`crate::AckExtension`].)

use std::time::{SystemTime, UNIX_EPOCH};

use bayeux_core::{Extension, Session};
use bayeux_message::{Message, Reply};
use serde_json::{json, Value};

/// Server side of CometD's `timesync`: lets clients estimate their clock offset and lag.
///
/// A meta message with `ext.timesync {tc, l, o}` gets `ext.timesync {tc, ts, p, a}` in its
/// reply: `ts` the server time it arrived, `p` how long the server held it, `a` the client's
/// estimate error. The reply omits it once the client is accurate (`l != 0`, `|a|` below the
/// target).
#[derive(Clone, Debug)]
pub struct TimesyncExtension {
    accuracy_target: i64,
}

impl Default for TimesyncExtension {
    fn default() -> Self {
        Self {
            accuracy_target: 25,
        }
    }
}

impl TimesyncExtension {
    /// Sets the accuracy, in milliseconds, below which replies stop carrying timesync data
    /// (25 by default, as in Java CometD).
    pub fn accuracy_target(mut self, millis: i64) -> Self {
        self.accuracy_target = millis;
        self
    }
}

/// Where the arrival time is kept inside the request's own `ext.timesync`, until the reply.
const ARRIVED: &str = "ts";

impl Extension for TimesyncExtension {
    fn incoming(&self, _session: Option<&Session>, message: &mut Message) -> bool {
        let is_meta = message.channel().is_some_and(|c| c.starts_with("/meta/"));
        let sync = message
            .as_map_mut()
            .get_mut("ext")
            .and_then(|ext| ext.get_mut("timesync"))
            .and_then(Value::as_object_mut);
        if let (true, Some(sync)) = (is_meta, sync) {
            sync.insert(ARRIVED.into(), now_millis().into());
        }
        true
    }

    fn outgoing_reply(&self, _session: Option<&Session>, request: &Message, reply: &mut Reply) {
        let Some(sync) = request
            .ext()
            .and_then(|ext| ext.get("timesync"))
            .and_then(Value::as_object)
        else {
            return;
        };
        let number = |key: &str| sync.get(key).and_then(Value::as_i64);
        let (Some(tc), Some(ts)) = (number("tc"), number(ARRIVED)) else {
            return;
        };
        let p = now_millis() - ts;
        let answer = match (number("l"), number("o")) {
            (Some(l), Some(o)) => {
                let a = tc + o + l - ts;
                (l == 0 || a.abs() >= self.accuracy_target)
                    .then(|| json!({"tc": tc, "ts": ts, "p": p, "a": a}))
            }
            // Old clients send only `tc`: always answer.
            _ => Some(json!({"tc": tc, "ts": ts, "p": p})),
        };
        if let Some(answer) = answer {
            reply
                .ext
                .get_or_insert_with(Default::default)
                .insert("timesync".into(), answer);
        }
    }
}

/// Adds a `timestamp` to every reply and delivery, as Java CometD's `TimestampExtension`
/// (`Tue Dec 03 10:00:00 UTC 2024`). Purely informational.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimestampExtension;

impl Extension for TimestampExtension {
    fn outgoing_reply(&self, _session: Option<&Session>, _request: &Message, reply: &mut Reply) {
        reply.extra.insert(
            "timestamp".into(),
            Value::String(format_timestamp(now_millis())),
        );
    }

    fn outgoing(&self, message: &mut Message) -> bool {
        message.as_map_mut().insert(
            "timestamp".into(),
            Value::String(format_timestamp(now_millis())),
        );
        true
    }
}

fn now_millis() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// `EEE MMM dd HH:mm:ss zzz yyyy` in UTC, the default format of Java's `Date.toString()`.
fn format_timestamp(millis: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        year
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(value: Value) -> Message {
        Message::from_map(value.as_object().expect("object").clone())
    }

    #[test]
    fn timestamps_use_javas_date_format() {
        assert_eq!(format_timestamp(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(
            format_timestamp(1_733_220_000_000),
            "Tue Dec 03 10:00:00 UTC 2024"
        );
        assert_eq!(
            format_timestamp(951_782_400_000),
            "Tue Feb 29 00:00:00 UTC 2000"
        );
    }

    #[test]
    fn timesync_answers_until_the_client_is_accurate() {
        let ext = TimesyncExtension::default();
        let now = now_millis();
        let cases = [
            (json!({"tc": now, "l": 0, "o": 0}), true),
            (json!({"tc": now - 10_000, "l": 5, "o": 0}), true),
            (json!({"tc": now, "l": 5, "o": -5}), false),
            (json!({"tc": now}), true),
        ];
        for (sync, answered) in cases {
            let mut request =
                meta(json!({"channel": "/meta/connect", "id": "1", "ext": {"timesync": sync}}));
            ext.incoming(None, &mut request);
            let mut reply = Reply::success(&request);
            ext.outgoing_reply(None, &request, &mut reply);
            let got = reply.ext.as_ref().and_then(|e| e.get("timesync"));
            assert_eq!(got.is_some(), answered, "{sync}");
            if let Some(got) = got {
                assert_eq!(got["tc"], sync["tc"]);
                assert!(got["p"].as_i64().expect("p") >= 0);
                let ts = got["ts"].as_i64().expect("ts");
                assert!((ts - now).abs() < 5_000);
            }
        }
    }

    #[test]
    fn timesync_ignores_broadcasts() {
        let ext = TimesyncExtension::default();
        let mut msg = meta(json!({"channel": "/chat", "data": 1, "ext": {"timesync": {"tc": 1}}}));
        ext.incoming(None, &mut msg);
        assert_eq!(
            msg.ext().and_then(|e| e.get("timesync")),
            Some(&json!({"tc": 1}))
        );
    }
}
