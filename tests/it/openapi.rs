//! The fake Jellyfin's responses and the bodies jellydemon sends validate against the official
//! OpenAPI specs of Jellyfin 10.9.11, 10.10.7, 10.11.11 and 12.0.0.

use crate::common::openapi::{VERSIONS, spec};
use crate::common::{Harness, KEY, M, mixed_scenario};
use jellydemon::reconcile::reconcile_once;
use jellydemon::sim::fake::FakeJellyfin;
use serde_json::Value;

async fn get(h: &Harness, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", h.url))
        .header("Authorization", format!("MediaBrowser Token=\"{KEY}\""))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn scenario(version: &str) -> (Harness, crate::common::Mixed) {
    let fake = FakeJellyfin::new(KEY);
    fake.set_version(version);
    fake.set_server_limit(30 * M);
    fake.set_hardware_acceleration("vaapi");
    let ids = mixed_scenario(&fake);
    (Harness::start(fake, "", "").await, ids)
}

#[tokio::test]
async fn fake_responses_validate_against_every_spec() {
    for version in VERSIONS {
        let spec = spec(version);
        let (h, ids) = scenario(version).await;
        for (path, spec_path) in [
            ("/System/Info/Public", "/System/Info/Public"),
            ("/System/Info", "/System/Info"),
            ("/System/Configuration", "/System/Configuration"),
            ("/Sessions", "/Sessions"),
            ("/Users", "/Users"),
            ("/Auth/Providers", "/Auth/Providers"),
        ] {
            spec.assert_response("GET", spec_path, &get(&h, path).await);
        }
        spec.assert_response(
            "GET",
            "/Users/{userId}",
            &get(&h, &format!("/Users/{}", ids.admin)).await,
        );
        // /System/Configuration/{key} is typed as a generic object; check the named schema.
        spec.assert_schema(
            "NetworkConfiguration",
            &get(&h, "/System/Configuration/network").await,
        );
        spec.assert_schema(
            "EncodingOptions",
            &get(&h, "/System/Configuration/encoding").await,
        );
        // Software transcoding too: `none` is no 10.9 encoder name.
        h.fake.set_hardware_acceleration("none");
        spec.assert_response("GET", "/Sessions", &get(&h, "/Sessions").await);
        spec.assert_schema(
            "EncodingOptions",
            &get(&h, "/System/Configuration/encoding").await,
        );
    }
}

#[tokio::test]
async fn jellydemons_policy_bodies_validate_against_every_spec() {
    for version in VERSIONS {
        let spec = spec(version);
        let (h, _ids) = scenario(version).await;
        let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
        let report = reconcile_once(&h.fleet(), &h.settings(), &ledger, false)
            .await
            .unwrap();
        assert!(report.writes() > 0);
        let posts = h.fake.policy_posts();
        assert_eq!(posts.len(), report.writes());
        for (_, body) in posts {
            spec.assert_request("POST", "/Users/{userId}/Policy", &body);
            spec.assert_schema("UserPolicy", &body);
        }
    }
}

#[tokio::test]
async fn the_validator_rejects_what_jellyfin_would_reject() {
    // A policy without the required provider ids, and a wrongly typed field, must fail: the
    // validation above is not vacuous.
    let spec = spec("10.11.11");
    let bad = serde_json::json!({"RemoteClientBitrateLimit": 1});
    let r = std::panic::catch_unwind(|| spec.assert_schema("UserPolicy", &bad));
    assert!(r.is_err(), "a policy without provider ids validated");
    let mut p = jellydemon::sim::fake::default_user_policy();
    p["RemoteClientBitrateLimit"] = serde_json::json!("fast");
    let r = std::panic::catch_unwind(|| spec.assert_schema("UserPolicy", &p));
    assert!(r.is_err(), "a string limit validated");
}

#[tokio::test]
async fn the_push_command_body_validates_against_every_spec() {
    use jellydemon::sim::fake::Playback;
    let fake = FakeJellyfin::new(KEY);
    let a = fake.add_user("a", |_| {});
    let s = fake.add_session(Some(&a), Some("203.0.113.1"), "Jellyfin Web", None);
    fake.start_playback(&s, Playback::direct("x", Some(40 * M), None));
    let h = Harness::start(fake, "", "").await;
    h.client()
        .set_max_streaming_bitrate(&s.as_str().into(), 12_000_000)
        .await
        .unwrap();
    let body = h
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/Command"))
        .and_then(|r| r.body)
        .unwrap();
    for version in VERSIONS {
        spec(version).assert_request("POST", "/Sessions/{sessionId}/Command", &body);
    }
}
