//! A steady state writes nothing: repeated passes over the same sessions converge and stop.

use crate::common::{Harness, KEY, M};
use jellydemon::reconcile::reconcile_once;
use jellydemon::sim::fake::{FakeJellyfin, Playback};

#[tokio::test]
async fn repeated_passes_over_a_steady_state_stop_writing() {
    let fake = FakeJellyfin::new(KEY);
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(fake.add_user(&format!("user{i}"), |_| {}));
    }
    for i in 0..1000 {
        let u = &users[i % users.len()];
        let playing = (i % 2 == 0).then(|| Playback::direct("x", Some(8 * M), Some(640_000)));
        fake.add_session(
            Some(u),
            Some(&format!("203.0.{}.{}", i / 250, i % 250)),
            "Jellyfin Web",
            playing,
        );
    }
    let h = Harness::start(fake, "", "").await;
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    let mut writes = Vec::new();
    for _ in 0..8 {
        let r = reconcile_once(&h.fleet(), &h.settings(), &ledger, false)
            .await
            .unwrap();
        let changed: Vec<String> = r
            .outcomes
            .iter()
            .filter(|o| o.decision.needs_write())
            .map(|o| {
                format!(
                    "{} {}->{} ({})",
                    o.decision.user_name, o.decision.current, o.decision.target, o.decision.reason
                )
            })
            .collect();
        writes.push(changed);
    }
    assert!(writes[2..].iter().all(|w| w.is_empty()), "{writes:#?}");
}
