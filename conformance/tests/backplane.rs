//! The backplane contract, checked on every implementation: the in-memory one, Redis, and a
//! Redis Cluster of 3 masters. What the cluster driver relies on: one total order of records
//! with dense positions, blocking reads, leases that one claimant wins, removals that exactly
//! one caller wins, hand-overs written under the lease they answer, heartbeats that run out,
//! presence that counts each user's sessions.

mod support;

use std::time::Duration;

use bayeux_core::{BrowserId, Entry, SessionRecord};
use bayeux_message::{ChannelName, ClientId, EncodedMessage};
use bayeux_redis::{RedisBackplane, RedisOptions};
use bayeux_server::backplane::{Backplane, Claim, CookieCheck, LogRecord, NodeId, Registration};
use bayeux_server::MemoryBackplane;
use serde_json::json;
use support::redis::{RedisCluster, RedisSentinel, RedisServer};

fn publish(n: u64) -> LogRecord {
    LogRecord::Entry(Entry::Publish {
        channel: ChannelName::parse("/chat/a").unwrap(),
        message: EncodedMessage::from_value(&json!({"channel": "/chat/a", "data": n})),
        skip: None,
    })
}

fn record(cid: &str, browser: Option<&str>, position: u64) -> SessionRecord {
    let mut attributes = serde_json::Map::new();
    attributes.insert("user".into(), json!("ann"));
    SessionRecord {
        client_id: ClientId::new(cid),
        browser: browser.map(BrowserId::new),
        cookie_bound: browser.is_some(),
        ack: true,
        attributes,
        subscriptions: vec![(ChannelName::parse("/chat/**").unwrap(), position)],
        position,
    }
}

fn presented(cookie: &str) -> CookieCheck {
    CookieCheck::Presented(BrowserId::new(cookie))
}

const MOVE: Duration = Duration::from_secs(5);

async fn check_contract(backplane: &dyn Backplane) {
    let a = NodeId::new("a#01");
    let b = NodeId::new("b#02");

    // The log: dense positions, in order, readable after any position.
    let start = backplane.head().await.expect("head");
    let positions = backplane
        .append((0..5).map(publish).collect())
        .await
        .expect("append");
    assert_eq!(positions, (start + 1..=start + 5).collect::<Vec<_>>());
    assert_eq!(backplane.head().await.unwrap(), start + 5);
    let read = backplane
        .read(start + 2, 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(
        read.iter().map(|r| r.position).collect::<Vec<_>>(),
        [start + 3, start + 4, start + 5]
    );
    assert_eq!(read[0].record, publish(2));
    assert!(read[0].appended_at_ms > 1_600_000_000_000);
    let range = backplane.range(start + 1, start + 3, 100).await.unwrap();
    assert_eq!(
        range.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        [publish(1), publish(2)]
    );
    // A read with nothing new waits for its time, then answers empty.
    let began = tokio::time::Instant::now();
    let none = backplane
        .read(start + 5, 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(
        began.elapsed() >= Duration::from_millis(250),
        "{:?}",
        began.elapsed()
    );

    // The registry: a claim bumps the lease and moves ownership; the cookie is checked.
    let cid = ClientId::new(format!("s{start}"));
    let mine = record(cid.as_str(), Some("cookie"), start);
    backplane.register(&a, &mine).await.expect("register");
    assert_eq!(
        backplane.lookup(&cid).await.unwrap(),
        Some(Registration {
            record: mine.clone(),
            owner: Some(a.clone())
        })
    );
    assert_eq!(
        backplane.sessions_of(&a).await.unwrap(),
        std::slice::from_ref(&cid)
    );
    assert_eq!(
        backplane
            .claim(&b, &cid, &presented("other"), MOVE)
            .await
            .unwrap(),
        Claim::Denied
    );
    assert_eq!(
        backplane
            .claim(&b, &cid, &CookieCheck::Absent, MOVE)
            .await
            .unwrap(),
        Claim::Denied,
        "a session bound to its cookie is not claimed without it"
    );
    assert_eq!(
        backplane
            .claim(&b, &ClientId::new("nobody"), &CookieCheck::Unchecked, MOVE)
            .await
            .unwrap(),
        Claim::Unknown
    );
    let claim = backplane
        .claim(&b, &cid, &presented("cookie"), MOVE)
        .await
        .unwrap();
    assert_eq!(
        claim,
        Claim::Claimed {
            record: mine.clone(),
            epoch: 2,
            previous: Some(a.clone())
        }
    );
    assert!(backplane.sessions_of(&a).await.unwrap().is_empty());
    assert_eq!(
        backplane.sessions_of(&b).await.unwrap(),
        std::slice::from_ref(&cid)
    );
    // One move at a time: until b says its move is over (or it times out), others wait.
    assert_eq!(
        backplane
            .claim(&a, &cid, &CookieCheck::Unchecked, MOVE)
            .await
            .unwrap(),
        Claim::Busy
    );
    backplane.moved(&a, &cid).await.unwrap();
    assert_eq!(
        backplane
            .claim(&a, &cid, &CookieCheck::Unchecked, MOVE)
            .await
            .unwrap(),
        Claim::Busy,
        "only the owner ends its move"
    );
    backplane.moved(&b, &cid).await.unwrap();
    // Only the owner's checkpoints and releases are written.
    let newer = record(cid.as_str(), Some("cookie"), start + 5);
    assert_eq!(
        backplane
            .checkpoint(&a, std::slice::from_ref(&newer))
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(
        backplane
            .checkpoint(&b, std::slice::from_ref(&newer))
            .await
            .unwrap(),
        [true]
    );
    assert!(!backplane.release(&a, &newer).await.unwrap());
    assert!(backplane.release(&b, &newer).await.unwrap());
    let released = backplane.lookup(&cid).await.unwrap().unwrap();
    assert_eq!(released.owner, None);
    assert_eq!(released.record, newer);
    // A released session is claimed with no former owner.
    let claim = backplane
        .claim(&a, &cid, &CookieCheck::Unchecked, MOVE)
        .await
        .unwrap();
    assert!(
        matches!(
            claim,
            Claim::Claimed {
                epoch: 3,
                previous: None,
                ..
            }
        ),
        "{claim:?}"
    );
    // A move whose node never says it is over ends with its time.
    let short = backplane
        .claim(&b, &cid, &CookieCheck::Unchecked, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(short, Claim::Busy, "a's move is under way");
    backplane.moved(&a, &cid).await.unwrap();
    let short = backplane
        .claim(
            &b,
            &cid,
            &CookieCheck::Unchecked,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert!(
        matches!(short, Claim::Claimed { epoch: 4, .. }),
        "{short:?}"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let again = backplane
        .claim(&a, &cid, &CookieCheck::Unchecked, MOVE)
        .await
        .unwrap();
    assert!(
        matches!(again, Claim::Claimed { epoch: 5, .. }),
        "{again:?}"
    );
    // The node that let go writes the exact record under the lease it was asked for, whoever
    // owns it now; not once a later claim came.
    let handed = record(cid.as_str(), Some("cookie"), start + 7);
    assert!(
        !backplane.hand_over(&handed, 4).await.unwrap(),
        "lease 4 is over"
    );
    assert_eq!(backplane.lookup(&cid).await.unwrap().unwrap().record, newer);
    assert!(backplane.hand_over(&handed, 5).await.unwrap());
    let found = backplane.lookup(&cid).await.unwrap().unwrap();
    assert_eq!(
        (found.record, found.owner),
        (handed.clone(), Some(a.clone()))
    );
    assert!(!backplane
        .hand_over(&record("nobody", None, 1), 1)
        .await
        .unwrap());
    // A session whose client never presented its cookie back is claimed by a request with
    // no cookie, never by one with another browser's; a bound one is recorded as such.
    let loose_id = ClientId::new(format!("t{start}"));
    let mut loose = record(loose_id.as_str(), Some("given"), start);
    loose.cookie_bound = false;
    backplane.register(&a, &loose).await.unwrap();
    assert_eq!(
        backplane
            .claim(&b, &loose_id, &presented("other"), MOVE)
            .await
            .unwrap(),
        Claim::Denied
    );
    let claim = backplane
        .claim(&b, &loose_id, &CookieCheck::Absent, MOVE)
        .await
        .unwrap();
    assert_eq!(
        claim,
        Claim::Claimed {
            record: loose.clone(),
            epoch: 2,
            previous: Some(a.clone())
        }
    );
    backplane.moved(&b, &loose_id).await.unwrap();
    let bound = SessionRecord {
        cookie_bound: true,
        ..loose.clone()
    };
    assert_eq!(
        backplane
            .checkpoint(&b, std::slice::from_ref(&bound))
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(
        backplane
            .claim(&a, &loose_id, &CookieCheck::Absent, MOVE)
            .await
            .unwrap(),
        Claim::Denied
    );
    assert_eq!(
        backplane.lookup(&loose_id).await.unwrap().unwrap().record,
        bound
    );
    assert!(backplane.remove(&loose_id, Some(&b)).await.unwrap());

    // Exactly one removal wins; only the owner's, when an owner is named.
    assert!(!backplane.remove(&cid, Some(&b)).await.unwrap());
    assert!(backplane.remove(&cid, Some(&a)).await.unwrap());
    assert!(!backplane.remove(&cid, None).await.unwrap());
    assert_eq!(backplane.lookup(&cid).await.unwrap(), None);
    assert!(backplane.sessions_of(&a).await.unwrap().is_empty());

    // Nodes: heartbeats run out; one leader at a time.
    backplane
        .heartbeat(&a, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(backplane.is_alive(&a).await.unwrap());
    assert!(!backplane.is_alive(&b).await.unwrap());
    assert!(backplane.nodes().await.unwrap().contains(&a));
    assert!(backplane
        .lead(&a, Duration::from_millis(300))
        .await
        .unwrap());
    assert!(!backplane
        .lead(&b, Duration::from_millis(300))
        .await
        .unwrap());
    assert!(backplane
        .lead(&a, Duration::from_millis(300))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!backplane.is_alive(&a).await.unwrap());
    assert!(backplane
        .lead(&b, Duration::from_millis(300))
        .await
        .unwrap());
    backplane.forget_node(&a).await.unwrap();
    assert!(!backplane.nodes().await.unwrap().contains(&a));

    check_presence(backplane).await;
}

/// Presence: a user is online from its first session's association to its last one's end;
/// repeating a call changes nothing; each change has a higher version than the one before.
async fn check_presence(backplane: &dyn Backplane) {
    let mut last_version = 0;
    // Associates, checks who joined and left, and that their versions went up.
    let mut associate =
        async |session: &str, user: Option<&str>, joined: Option<&str>, left: Option<&str>| {
            let change = backplane
                .associate(&ClientId::new(session), user)
                .await
                .unwrap();
            let mut versions = Vec::new();
            for (got, want) in [(&change.left, left), (&change.joined, joined)] {
                assert_eq!(got.as_ref().map(|(u, _)| u.as_str()), want, "{change:?}");
                if let Some((_, version)) = got {
                    versions.push(*version);
                }
            }
            for version in versions {
                assert!(version > last_version, "{change:?} after {last_version}");
                last_version = version;
            }
            change
        };
    let online = || async {
        let mut users = backplane.online_users().await.unwrap();
        users.sort();
        users
    };
    assert_eq!(online().await, Vec::<(String, u64)>::new());
    let zoe = associate("p1", Some("zo\u{eb}"), Some("zo\u{eb}"), None).await;
    associate("p1", Some("zo\u{eb}"), None, None).await;
    associate("p2", Some("zo\u{eb}"), None, None).await;
    let yan = associate("p3", Some("yan"), Some("yan"), None).await;
    let (zoe_at, yan_at) = (zoe.joined.unwrap().1, yan.joined.unwrap().1);
    assert_eq!(
        online().await,
        [("yan".to_owned(), yan_at), ("zo\u{eb}".to_owned(), zoe_at)]
    );
    // A session moving to another user: the old one stays while it has another session.
    associate("p1", Some("yan"), None, None).await;
    associate("p2", None, None, Some("zo\u{eb}")).await;
    associate("p2", None, None, None).await;
    assert_eq!(online().await, [("yan".to_owned(), yan_at)]);
    // Every association is listed, a few at a time.
    let mut listed = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, sessions) = backplane.associated_sessions(cursor, 1).await.unwrap();
        listed.extend(sessions.into_iter().map(|s| s.as_str().to_owned()));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    listed.sort();
    listed.dedup();
    assert_eq!(listed, ["p1", "p3"]);
    // The last session moves to a new user: one leaves, one joins, in one call.
    associate("p3", None, None, None).await;
    let xi = associate("p1", Some("xi"), Some("xi"), Some("yan")).await;
    assert_eq!(online().await, [("xi".to_owned(), xi.joined.unwrap().1)]);
    associate("p1", None, None, Some("xi")).await;
    assert_eq!(online().await, Vec::<(String, u64)>::new());
    let (next, none) = backplane.associated_sessions(0, 10).await.unwrap();
    assert_eq!((next, none), (0, Vec::new()));
}

#[tokio::test]
async fn memory_backplane_keeps_the_contract() {
    check_contract(&MemoryBackplane::new()).await;
}

#[tokio::test]
async fn redis_keeps_the_contract() {
    let redis = RedisServer::start().await;
    let backplane = RedisBackplane::new(&redis.url(), RedisOptions::default()).expect("url");
    check_contract(&backplane).await;
    // Twice: the log and leases go on where they were.
    check_contract(&backplane).await;
}

#[tokio::test]
async fn redis_cluster_keeps_the_contract() {
    let cluster = RedisCluster::start(3).await;
    let backplane = RedisBackplane::new(&cluster.url(), RedisOptions::default()).expect("url");
    check_contract(&backplane).await;
}

#[tokio::test]
async fn redis_through_sentinel_keeps_the_contract() {
    let sentinel = RedisSentinel::start().await;
    let backplane = RedisBackplane::new(&sentinel.url(), RedisOptions::default()).expect("url");
    check_contract(&backplane).await;
}

#[tokio::test]
async fn redis_calls_fail_fast_while_it_is_down_and_work_again_after() {
    let mut redis = RedisServer::start().await;
    let backplane = RedisBackplane::new(&redis.url(), RedisOptions::default()).expect("url");
    let before = backplane.append(vec![publish(1)]).await.expect("append");
    redis.stop();
    let began = tokio::time::Instant::now();
    assert!(backplane.append(vec![publish(2)]).await.is_err());
    assert!(backplane.head().await.is_err());
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    redis.start_again().await;
    // The data survived (AOF), positions go on.
    let mut after = None;
    for _ in 0..50 {
        if let Ok(positions) = backplane.append(vec![publish(3)]).await {
            after = Some(positions);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after, Some(vec![before[0] + 1]));
    let read = backplane
        .read(0, 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(
        read.into_iter().map(|r| r.record).collect::<Vec<_>>(),
        [publish(1), publish(3)]
    );
}

#[tokio::test]
async fn redis_log_keeps_what_its_retention_allows() {
    let redis = RedisServer::start().await;
    let backplane =
        RedisBackplane::new(&redis.url(), RedisOptions::default().max_len(100)).expect("url");
    for chunk in 0..10 {
        backplane
            .append((chunk * 100..chunk * 100 + 100).map(publish).collect())
            .await
            .unwrap();
    }
    let kept = backplane.range(0, 1000, 10_000).await.unwrap();
    // Trimmed approximately (whole macro-nodes), never below the limit.
    assert!(kept.len() >= 100 && kept.len() < 1000, "{}", kept.len());
    assert_eq!(kept.last().unwrap().position, 1000);
    // By age: once older than the age, everything but the newest sample goes.
    backplane
        .trim_older_than(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        backplane.range(0, 1000, 10_000).await.unwrap().len(),
        kept.len()
    );
}
