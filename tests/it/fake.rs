//! The fake Jellyfin keeps Jellyfin's traps (listed in `src/sim/fake.rs`), and jellydemon
//! avoids them.

use crate::common::{Harness, KEY, M};
use jellydemon::reconcile::reconcile_once;
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use reqwest::StatusCode;
use serde_json::json;

async fn h() -> (Harness, String) {
    let fake = FakeJellyfin::new(KEY);
    let id = fake.add_user("alice", |p| {
        p.insert("IsAdministrator".into(), json!(true));
    });
    fake.add_user("bob", |_| {});
    (Harness::start(fake, "", "").await, id)
}

fn auth() -> String {
    format!("MediaBrowser Token=\"{KEY}\"")
}

#[tokio::test]
async fn only_the_mediabrowser_authorization_header_authenticates() {
    let (h, _) = h().await;
    let c = reqwest::Client::new();
    let url = format!("{}/Sessions", h.url);
    let ok = c
        .get(&url)
        .header("Authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let with_client = c
        .get(&url)
        .header(
            "Authorization",
            format!("MediaBrowser Client=\"x\", Device=\"y\", Token=\"{KEY}\""),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(with_client.status(), StatusCode::OK);
    for (name, value) in [
        ("X-Emby-Token", KEY.to_string()),
        ("X-MediaBrowser-Token", KEY.to_string()),
        ("X-Emby-Authorization", auth()),
    ] {
        let r = c.get(&url).header(name, value).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
    let r = c.get(format!("{url}?api_key={KEY}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The public endpoint needs nothing.
    let r = c
        .get(format!("{}/System/Info/Public", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn there_is_no_get_policy_route() {
    let (h, id) = h().await;
    let r = reqwest::Client::new()
        .get(format!("{}/Users/{id}/Policy", h.url))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_policy_post_replaces_everything_and_needs_the_provider_ids() {
    let (h, id) = h().await;
    let c = reqwest::Client::new();
    let url = format!("{}/Users/{id}/Policy", h.url);
    // Without provider ids: 400 ValidationProblemDetails, nothing changed.
    let r = c
        .post(&url)
        .header("Authorization", auth())
        .json(&json!({"RemoteClientBitrateLimit": 5_000_000, "IsAdministrator": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["errors"]["AuthenticationProviderId"].is_array(),
        "{body}"
    );
    assert_eq!(h.fake.limit(&id), 0);

    // A partial body (a lossy client): every missing property is reset.
    let bob = h.fake.users()[1].id.clone();
    let r = c
        .post(format!("{}/Users/{bob}/Policy", h.url))
        .header("Authorization", auth())
        .json(&json!({
            "RemoteClientBitrateLimit": 5_000_000,
            "AuthenticationProviderId": jellydemon::sim::fake::AUTH_PROVIDER,
            "PasswordResetProviderId": jellydemon::sim::fake::RESET_PROVIDER
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let p = h.fake.user(&bob).unwrap().policy;
    assert_eq!(p["RemoteClientBitrateLimit"], 5_000_000);
    assert_eq!(
        p["EnableRemoteAccess"], false,
        "reset by the full replacement"
    );
    assert_eq!(p["EnableMediaPlayback"], false);

    // Demoting the only administrator is refused.
    let r = c
        .post(&url)
        .header("Authorization", auth())
        .json(&json!({
            "IsAdministrator": false,
            "AuthenticationProviderId": "a",
            "PasswordResetProviderId": "b"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_users_are_404_and_guids_have_no_dashes() {
    let (h, id) = h().await;
    assert_eq!(id.len(), 32);
    assert!(
        id.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{}/Users/{}", h.url, "0".repeat(32)))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.text().await.unwrap(), "User not found");
    // A dashed id addresses the same user, as Jellyfin's Guid binding does.
    let dashed = crate::common::dashed(&id);
    let r = c
        .get(format!("{}/Users/{dashed}", h.url))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_limit_applies_only_when_a_stream_starts() {
    let (h, _) = h().await;
    let bob = h.fake.users()[1].id.clone();
    let s = h
        .fake
        .add_session(Some(&bob), Some("203.0.113.3"), "Jellyfin Web", None);
    h.fake.set_limit_by_hand(&bob, 8 * M);
    assert_eq!(
        h.fake
            .start_playback(&s, Playback::direct("Remux", Some(40 * M), None)),
        8 * M
    );
    // Raising the limit does not touch the running stream...
    h.fake.set_limit_by_hand(&bob, 30 * M);
    let running = h.fake.sessions()[0].playing.clone().unwrap();
    assert_eq!(running.wire_rate(), 8 * M);
    // ...the next item picks it up.
    assert_eq!(
        h.fake
            .start_playback(&s, Playback::direct("Next", Some(40 * M), None)),
        30 * M
    );
    // 0 means the server-wide limit; a LAN client gets no limit.
    h.fake.set_limit_by_hand(&bob, 0);
    h.fake.set_server_limit(12 * M);
    assert_eq!(
        h.fake
            .start_playback(&s, Playback::direct("Next", Some(40 * M), None)),
        12 * M
    );
    let lan = h
        .fake
        .add_session(Some(&bob), Some("192.168.0.3"), "Jellyfin Web", None);
    assert_eq!(
        h.fake
            .start_playback(&lan, Playback::direct("Next", Some(40 * M), None)),
        40 * M
    );
}

#[tokio::test]
async fn jellydemon_sends_only_the_authorization_header_and_no_api_key_query() {
    let (h, _) = h().await;
    let bob = h.fake.users()[1].id.clone();
    h.fake.add_session(
        Some(&bob),
        Some("203.0.113.3"),
        "Jellyfin Web",
        Some(Playback::direct("x", Some(5 * M), None)),
    );
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    reconcile_once(&h.fleet(), &h.settings(), &ledger, false)
        .await
        .unwrap();
    let requests = h.fake.requests();
    assert!(!requests.is_empty());
    for r in requests {
        assert!(r.headers.contains(&"authorization".to_string()), "{r:?}");
        assert!(
            !r.headers
                .iter()
                .any(|h| h.starts_with("x-emby") || h.starts_with("x-mediabrowser")),
            "{r:?}"
        );
        assert!(
            r.query.is_none_or(|q| !q.contains("api_key")),
            "{:?}",
            r.path
        );
        assert_eq!(r.status / 100, 2, "{} {} -> {}", r.method, r.path, r.status);
    }
}
