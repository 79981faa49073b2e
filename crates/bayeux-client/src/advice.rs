//! What to do after each handshake and connect: the server's advice plus the client's backoff.
//!
//! Pure functions of the outcome, the advice and the failure count, so that the reconnect
//! policy can be read (and tested) in one place; `session.rs` only carries them out.

use std::time::Duration;

use bayeux_message::{Message, Reconnect};
use serde_json::{Map, Value};

/// The advice in force, as the server last sent it.
///
/// Like the CometD JavaScript client, an `advice` object replaces the whole advice: keys it
/// omits return to their defaults rather than keeping an older value, because servers write
/// their advice with that client in mind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AdviceState {
    /// How long the server holds a `/meta/connect`.
    pub timeout: Duration,
    /// The pause between a connect reply and the next connect.
    pub interval: Duration,
    /// How long the server keeps a session without a connect (0: not advertised).
    pub max_interval: Duration,
}

impl Default for AdviceState {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            interval: Duration::ZERO,
            max_interval: Duration::ZERO,
        }
    }
}

impl AdviceState {
    /// Replaces the advice with `advice` over the defaults.
    pub fn replace(&mut self, advice: &Map<String, Value>) {
        let millis = |key: &str| {
            advice.get(key).and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            })
        };
        let defaults = Self::default();
        *self = Self {
            timeout: millis("timeout").map_or(defaults.timeout, Duration::from_millis),
            interval: millis("interval").map_or(defaults.interval, Duration::from_millis),
            max_interval: millis("maxInterval")
                .map_or(defaults.max_interval, Duration::from_millis),
        };
    }
}

/// The `reconnect` of a message's advice, when it has a known one.
pub(crate) fn reconnect_of(message: &Message) -> Option<Reconnect> {
    match message.advice()?.get("reconnect")?.as_str()? {
        "retry" => Some(Reconnect::Retry),
        "handshake" => Some(Reconnect::Handshake),
        "none" => Some(Reconnect::None),
        _ => None,
    }
}

/// How the delay after failures grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Added to the delay at each consecutive failure.
    pub increment: Duration,
    /// The delay never exceeds this.
    pub max: Duration,
}

impl Default for Backoff {
    /// One more second per failure, at most one minute: the CometD JavaScript client's values.
    fn default() -> Self {
        Self {
            increment: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The extra delay after `failures` consecutive failures (none after a success).
    pub fn delay(&self, failures: u32) -> Duration {
        self.increment.saturating_mul(failures).min(self.max)
    }
}

/// How a handshake or connect ended.
#[derive(Clone, Debug)]
pub(crate) enum Outcome<'a> {
    /// The server replied (successfully or not).
    Reply(&'a Message),
    /// No reply: the transport failed or the reply did not come in time.
    Lost,
}

/// The next step of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send `/meta/connect` after `delay`.
    Connect {
        /// Pause before sending.
        delay: Duration,
    },
    /// Send `/meta/handshake` (a new session) after `delay`.
    Handshake {
        /// Pause before sending.
        delay: Duration,
    },
    /// The server said `reconnect: none`: stop.
    Stop,
}

/// After a handshake; `failures` counts this one when it failed.
pub(crate) fn after_handshake(
    outcome: Outcome<'_>,
    advice: &AdviceState,
    failures: u32,
    backoff: &Backoff,
) -> Next {
    let retry_later = Next::Handshake {
        delay: advice.interval + backoff.delay(failures),
    };
    match outcome {
        Outcome::Reply(reply) if crate::error::is_successful(reply) => match reconnect_of(reply) {
            Some(Reconnect::None) => Next::Stop,
            // The first connect goes at once: it is the one that asks for an immediate answer.
            _ => Next::Connect {
                delay: Duration::ZERO,
            },
        },
        // A refused handshake is retried unless the server says otherwise.
        Outcome::Reply(reply) => match reconnect_of(reply) {
            Some(Reconnect::None) => Next::Stop,
            _ => retry_later,
        },
        Outcome::Lost => retry_later,
    }
}

/// After a connect; `failures` counts this one when it failed, `unconnected` is how long the
/// client has been without a successful connect.
pub(crate) fn after_connect(
    outcome: Outcome<'_>,
    advice: &AdviceState,
    failures: u32,
    unconnected: Duration,
    backoff: &Backoff,
) -> Next {
    match outcome {
        Outcome::Reply(reply) => {
            let successful = crate::error::is_successful(reply);
            match reconnect_of(reply).unwrap_or(Reconnect::Retry) {
                Reconnect::None => Next::Stop,
                Reconnect::Handshake => Next::Handshake {
                    delay: advice.interval,
                },
                Reconnect::Retry if successful => Next::Connect {
                    delay: advice.interval,
                },
                Reconnect::Retry => Next::Connect {
                    delay: advice.interval + backoff.delay(failures),
                },
            }
        }
        Outcome::Lost => {
            let wait = backoff.delay(failures);
            // Past the server's maxInterval the session is surely gone: start a new one rather
            // than be told so by one more failed connect.
            let session_expired = !advice.max_interval.is_zero()
                && unconnected + wait > advice.timeout + advice.interval + advice.max_interval;
            if session_expired {
                Next::Handshake { delay: wait }
            } else {
                Next::Connect {
                    delay: advice.interval + wait,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: Value) -> Message {
        match value {
            Value::Object(map) => Message::from_map(map),
            _ => panic!("messages are objects"),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const BACKOFF: Backoff = Backoff {
        increment: Duration::from_millis(1000),
        max: Duration::from_millis(2500),
    };

    #[test]
    fn backoff_grows_by_increment_and_is_capped() {
        let delays: Vec<_> = (0..5).map(|n| BACKOFF.delay(n)).collect();
        assert_eq!(delays, [ms(0), ms(1000), ms(2000), ms(2500), ms(2500)]);
        assert_eq!(
            Backoff::default().delay(u32::MAX),
            Duration::from_secs(60),
            "no overflow"
        );
    }

    #[test]
    fn advice_replaces_the_whole_advice() {
        let mut advice = AdviceState::default();
        let sent =
            json!({"reconnect": "retry", "interval": 2000, "timeout": 20000, "maxInterval": 10000});
        advice.replace(sent.as_object().expect("object"));
        assert_eq!(
            advice,
            AdviceState {
                timeout: ms(20000),
                interval: ms(2000),
                max_interval: ms(10000)
            }
        );
        advice.replace(json!({"timeout": 5000}).as_object().expect("object"));
        assert_eq!(
            advice,
            AdviceState {
                timeout: ms(5000),
                interval: ms(0),
                max_interval: ms(0)
            }
        );
    }

    #[test]
    fn handshake_outcomes() {
        let advice = AdviceState {
            interval: ms(100),
            ..AdviceState::default()
        };
        let ok = message(json!({"channel": "/meta/handshake", "successful": true}));
        assert_eq!(
            after_handshake(Outcome::Reply(&ok), &advice, 0, &BACKOFF),
            Next::Connect { delay: ms(0) }
        );
        let ok_stop = message(
            json!({"channel": "/meta/handshake", "successful": true, "advice": {"reconnect": "none"}}),
        );
        assert_eq!(
            after_handshake(Outcome::Reply(&ok_stop), &advice, 0, &BACKOFF),
            Next::Stop
        );
        let denied = message(json!({"channel": "/meta/handshake", "successful": false,
            "error": "403::handshake_denied", "advice": {"reconnect": "none"}}));
        assert_eq!(
            after_handshake(Outcome::Reply(&denied), &advice, 1, &BACKOFF),
            Next::Stop
        );
        let failed = message(json!({"channel": "/meta/handshake", "successful": false}));
        assert_eq!(
            after_handshake(Outcome::Reply(&failed), &advice, 2, &BACKOFF),
            Next::Handshake { delay: ms(2100) }
        );
        assert_eq!(
            after_handshake(Outcome::Lost, &advice, 3, &BACKOFF),
            Next::Handshake { delay: ms(2600) }
        );
    }

    #[test]
    fn connect_outcomes() {
        let advice = AdviceState {
            timeout: ms(20000),
            interval: ms(50),
            max_interval: ms(0),
        };
        let ok = message(json!({"channel": "/meta/connect", "successful": true}));
        assert_eq!(
            after_connect(Outcome::Reply(&ok), &advice, 0, ms(0), &BACKOFF),
            Next::Connect { delay: ms(50) }
        );
        let stop = message(
            json!({"channel": "/meta/connect", "successful": true, "advice": {"reconnect": "none"}}),
        );
        assert_eq!(
            after_connect(Outcome::Reply(&stop), &advice, 0, ms(0), &BACKOFF),
            Next::Stop
        );
        let unknown = message(json!({"channel": "/meta/connect", "successful": false,
            "error": "402::session_unknown", "advice": {"reconnect": "handshake", "interval": 0}}));
        assert_eq!(
            after_connect(Outcome::Reply(&unknown), &advice, 1, ms(0), &BACKOFF),
            Next::Handshake { delay: ms(50) }
        );
        // A failure without advice is retried with backoff.
        let failed = message(json!({"channel": "/meta/connect", "successful": false}));
        assert_eq!(
            after_connect(Outcome::Reply(&failed), &advice, 2, ms(0), &BACKOFF),
            Next::Connect { delay: ms(2050) }
        );
        // Lost connects: retry forever when maxInterval is unknown...
        assert_eq!(
            after_connect(Outcome::Lost, &advice, 9, ms(600_000), &BACKOFF),
            Next::Connect { delay: ms(2550) }
        );
        // ...and re-handshake once past timeout + interval + maxInterval.
        let bounded = AdviceState {
            max_interval: ms(10000),
            ..advice
        };
        assert_eq!(
            after_connect(Outcome::Lost, &bounded, 1, ms(28000), &BACKOFF),
            Next::Connect { delay: ms(1050) }
        );
        assert_eq!(
            after_connect(Outcome::Lost, &bounded, 2, ms(28100), &BACKOFF),
            Next::Handshake { delay: ms(2000) }
        );
    }
}
