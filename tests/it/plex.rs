//! Plex on the same link (`[[server]] kind = "plex"`), against the fake Plex
//! (`src/sim/plex.rs`):
//! * managed (the default): Plex is one claimant beside Jellyfin's remote users and its share
//!   becomes its `WanTotalMaxUploadRate`, the original kept in the state file first, a value
//!   set by hand in Plex taken as the new original, and put back at the stop or by
//!   `jellydemon restore` (`src/core/plan/servers.rs`, `src/daemon/servers.rs`);
//! * `manage_wan_total = false`: what Plex streams outside the house (its `wan` and
//!   `cellular` sessions, at the bandwidth it reserved) comes off the budget Jellyfin's users
//!   share (`src/adapters/budget/feed.rs`); a Plex that fails keeps its last reading;
//! * one that never answers, or refuses the token, leaves Jellyfin managed on the whole
//!   budget; the token never shows.
//!
//! The budget is 60 - 5 = 55 Mbps; bob is idle, so his limit is the join share.

use crate::common::{Harness, KEY, M};
use jellydemon::sim::fake::FakeJellyfin;
use jellydemon::sim::plex::FakePlex;

const TOKEN: &str = "plex-token-0123456789";

/// A fake Jellyfin with one idle user, bob, and the harness with `[[server]]` at `plex_url`
/// (`extra`: more of its settings).
async fn house(plex_url: &str, token: &str, extra: &str) -> (Harness, String) {
    let fake = FakeJellyfin::new(KEY);
    let bob = fake.add_user("bob", |_| {});
    let h = Harness::start(fake, "", &plex_server(plex_url, token, extra)).await;
    (h, bob)
}

/// A `[[server]]` entry for the Plex at `plex_url`, read every second (`extra`: more of its
/// settings).
fn plex_server(plex_url: &str, token: &str, extra: &str) -> String {
    format!(
        "[[server]]\nkind = \"plex\"\nurl = \"{plex_url}\"\ntoken = \"{token}\"\n\
         interval = \"1s\"\ntimeout = \"1s\"\n{extra}"
    )
}

/// Plex's total left alone: what it streams outside comes off the budget.
const READ_ONLY: &str = "manage_wan_total = false\n";

async fn limit_becomes(h: &Harness, user: &str, bps: i64) {
    crate::common::eventually(&format!("{user}'s limit becomes {bps}"), || {
        h.fake.limit(user) == bps
    })
    .await;
}

#[tokio::test]
async fn what_plex_streams_outside_the_house_comes_off_the_budget() {
    let plex = FakePlex::new(TOKEN);
    plex.add_session("anneliese", "wan", 20_000);
    plex.add_session("catriona", "cellular", 5_000);
    plex.add_session("dad", "lan", 30_000);
    let (plex_url, _stop) = plex.spawn().await;
    let (h, bob) = house(&plex_url, TOKEN, READ_ONLY).await;
    let d = h.daemon("").await;

    // 20 + 5 Mbps outside (the LAN stream is not on the upload): 30 left for Jellyfin.
    let s = d.wait_for(|s| s["budget_bps"] == 30 * M).await;
    let server = &s["budget"]["servers"][0];
    assert_eq!(server["name"], "plex", "{s:#}");
    assert_eq!(server["up"], true, "{s:#}");
    assert_eq!(server["remote_streams"], 2, "{s:#}");
    assert_eq!(server["remote_bps"], 25 * M, "{s:#}");
    assert_eq!(server["counted"], true, "{s:#}");
    let cause = s["budget"]["cause"].as_str().unwrap();
    assert!(
        cause.contains("plex streams 25 Mbps outside the house, which leaves 30 Mbps"),
        "{cause}"
    );
    limit_becomes(&h, &bob, 30 * M).await;
    let metrics = d.text("/metrics").await;
    assert!(
        metrics.contains("jellydemon_other_servers_upload_bps 25000000"),
        "{metrics}"
    );
    // No name of who watches what on Plex, and never the token.
    let text = s.to_string();
    for secret in ["anneliese", "catriona", TOKEN] {
        assert!(!text.contains(secret), "{secret} in the state: {text}");
    }
    assert!(!metrics.contains(TOKEN));

    // Plex's streams end: the whole budget again.
    plex.clear();
    d.wait_for(|s| s["budget_bps"] == 55 * M).await;
    limit_becomes(&h, &bob, 55 * M).await;

    // One starts, then Plex fails: its last reading still counts (its streams likely play on),
    // said on the page and in the state.
    plex.add_session("anneliese", "wan", 10_000);
    d.wait_for(|s| s["budget_bps"] == 45 * M).await;
    plex.set_failing(true);
    let s = d
        .wait_for(|s| s["budget"]["servers"][0]["up"] == false)
        .await;
    assert_eq!(s["budget_bps"], 45 * M, "{s:#}");
    let error = s["budget"]["servers"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("HTTP 500"), "{error}");
    assert_eq!(h.fake.limit(&bob), 45 * M);

    // It answers again.
    plex.set_failing(false);
    d.wait_for(|s| s["budget"]["servers"][0]["up"] == true && s["budget_bps"] == 45 * M)
        .await;
    d.stop().await;
}

#[tokio::test]
async fn a_plex_that_never_answers_or_refuses_the_token_leaves_jellyfin_managed() {
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (h, bob) = house(&format!("http://127.0.0.1:{port}"), TOKEN, "").await;
    let d = h.daemon("").await;
    limit_becomes(&h, &bob, 55 * M).await;
    let s = d
        .wait_for(|s| s["budget"]["servers"][0]["last_error"].is_string())
        .await;
    assert_eq!(s["budget"]["servers"][0]["up"], false, "{s:#}");
    assert_eq!(s["budget_bps"], 55 * M, "{s:#}");
    d.stop().await;

    // A Plex that refuses the token says which setting to fix.
    let plex = FakePlex::new(TOKEN);
    plex.add_session("anneliese", "wan", 20_000);
    let (plex_url, _stop) = plex.spawn().await;
    let (h, bob) = house(&plex_url, "not-the-token", "").await;
    let d = h.daemon("").await;
    let s = d
        .wait_for(|s| s["budget"]["servers"][0]["last_error"].is_string())
        .await;
    let error = s["budget"]["servers"][0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("refused the token (server.token_file)"),
        "{error}"
    );
    assert!(!error.contains("not-the-token"), "{error}");
    limit_becomes(&h, &bob, 55 * M).await;
    assert_eq!(plex.reads(), 0);
    d.stop().await;
}

/// `reconcile --once` reads Plex once and plans with what it leaves, as the daemon does.
#[tokio::test]
async fn a_one_shot_pass_takes_what_plex_streams_outside_off_the_budget() {
    let plex = FakePlex::new(TOKEN);
    plex.add_session("anneliese", "wan", 20_000);
    let (plex_url, _stop) = plex.spawn().await;
    let (h, bob) = house(&plex_url, TOKEN, "").await;
    let (code, out, err) = h.cli(&["reconcile", "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(h.fake.limit(&bob), 35 * M, "{out}\n{err}");
    assert!(
        out.contains("plex streams 20 Mbps outside the house"),
        "{out}"
    );
}

#[tokio::test]
async fn check_shows_what_plex_streams_outside_and_how_it_counts() {
    let plex = FakePlex::new(TOKEN);
    plex.add_session("anneliese", "wan", 20_000);
    plex.add_session("dad", "lan", 30_000);
    plex.set_wan_total_kbps(40_000);
    let (plex_url, _stop) = plex.spawn().await;
    let (h, _bob) = house(&plex_url, TOKEN, READ_ONLY).await;
    let (_, out, err) = h.cli(&["check"]).await;
    assert!(
        out.contains(
            "it keeps its streams outside the house to 40 Mbps in total (WanTotalMaxUploadRate)"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "server plex: plex at {plex_url}, 1 stream outside the house, 20 Mbps (taken off \
             the budget before Jellyfin's streams share it)"
        )),
        "{out}\n{err}"
    );
    assert!(
        out.contains("anneliese on Player 0 (playing): 20 Mbps"),
        "{out}"
    );
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "{out}\n{err}");
}

/// A Plex webhook (`POST /hook/plex?token=…`, Plex cannot send a header) makes the daemon read
/// Plex again at once instead of at the next `interval`; its body is never read. Without the
/// secret, or from a web page, it is refused.
#[tokio::test]
async fn a_plex_webhook_reads_plex_again_at_once() {
    let plex = FakePlex::new(TOKEN);
    plex.add_session("anneliese", "wan", 20_000);
    let (plex_url, _stop) = plex.spawn().await;
    let fake = FakeJellyfin::new(KEY);
    let bob = fake.add_user("bob", |_| {});
    // Read once at the start, then not for an hour but when a webhook says so.
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[[server]]\nkind = \"plex\"\nurl = \"{plex_url}\"\ntoken = \"{TOKEN}\"\n\
             interval = \"1h\"\n{READ_ONLY}"
        ),
    )
    .await;
    let d = h.daemon("").await;
    d.wait_for(|s| s["budget_bps"] == 35 * M).await;
    limit_becomes(&h, &bob, 35 * M).await;
    plex.clear();

    let post = |url: String| {
        d.http
            .post(url)
            .body("--plex-multipart-boundary\r\n")
            .send()
    };
    let wrong = post(format!("{}/hook/plex?token=nope", d.url))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let none = post(format!("{}/hook/plex", d.url)).await.unwrap();
    assert_eq!(none.status(), 401);
    let page = d
        .http
        .post(format!(
            "{}/hook/plex?token={}",
            d.url,
            crate::common::HOOK_TOKEN
        ))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    assert_eq!(plex.reads(), 1, "refused webhooks read nothing");

    let ok = post(format!(
        "{}/hook/plex?token={}",
        d.url,
        crate::common::HOOK_TOKEN
    ))
    .await
    .unwrap();
    assert_eq!(ok.status(), 202);
    d.wait_for(|s| s["budget_bps"] == 55 * M).await;
    limit_becomes(&h, &bob, 55 * M).await;
    assert_eq!(plex.reads(), 2);
    d.stop().await;

    // Without a Plex server the route says so.
    let (h, _) = crate::common::torrent::streaming_house("").await;
    let d = h.daemon("").await;
    let r = d
        .http
        .post(format!(
            "{}/hook/plex?token={}",
            d.url,
            crate::common::HOOK_TOKEN
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    d.stop().await;
}

fn wan_total_in_ledger(h: &Harness) -> Option<i64> {
    h.ledger()
        .setting("plex/WanTotalMaxUploadRate")
        .map(|e| e.original)
}

/// Managed, Plex is one claimant beside Jellyfin's remote users: alice streams on Jellyfin,
/// bob is idle.
#[tokio::test]
async fn plex_is_one_claimant_and_its_share_becomes_its_wan_total() {
    use jellydemon::sim::fake::Playback;
    let plex = FakePlex::new(TOKEN);
    plex.set_wan_total_kbps(40_000);
    let (plex_url, _stop) = plex.spawn().await;
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Web",
        Some(Playback::direct("Film", Some(60 * M), None)),
    );
    let h = Harness::start(fake, "", &plex_server(&plex_url, TOKEN, "")).await;
    let d = h.daemon("").await;

    // Plex streams nothing: it takes nothing from alice, and its total is what a newcomer
    // would get beside her, half of 55 Mbps. Its original was in the state file first.
    crate::common::eventually("Plex's total becomes 27.5 Mbps", || {
        plex.wan_total_kbps() == 27_500
    })
    .await;
    limit_becomes(&h, &alice, 55 * M).await;
    assert_eq!(wan_total_in_ledger(&h), Some(40_000));
    let s = d
        .wait_for(|s| s["server_limits"][0]["limit_bps"] == 27_500_000)
        .await;
    assert_eq!(
        s["budget_bps"],
        55 * M,
        "nothing comes off the budget: {s:#}"
    );
    assert_eq!(s["budget"]["servers"][0]["managed"], true, "{s:#}");
    let why = s["server_shares"][0]["reason"].as_str().unwrap();
    assert!(why.contains("a newcomer's share of 55 Mbps"), "{why}");

    // Plex streams 5 Mbps outside: as a claimant it keeps its share, alice gets the other
    // half.
    plex.add_session("anneliese", "wan", 5_000);
    limit_becomes(&h, &alice, 27_500_000).await;
    assert_eq!(plex.wan_total_kbps(), 27_500);

    // It streams 35 Mbps, over its share: its total stays at the share, and what it sends
    // is left to it until it follows, so alice gets 55 - 35.
    plex.clear();
    plex.add_session("anneliese", "wan", 35_000);
    limit_becomes(&h, &alice, 20 * M).await;
    let s = d
        .wait_for(|s| s["server_shares"][0]["kept"] == 35_000_000)
        .await;
    assert_eq!(s["server_shares"][0]["limit"], 27_500_000, "{s:#}");
    assert_eq!(plex.wan_total_kbps(), 27_500);

    // The owner sets 50 Mbps by hand in Plex: that is the original now; jellydemon's share
    // is written again.
    plex.set_wan_total_kbps(50_000);
    crate::common::eventually("the hand-set total becomes the original", || {
        wan_total_in_ledger(&h) == Some(50_000)
    })
    .await;
    crate::common::eventually("the share is written again", || {
        plex.wan_total_kbps() == 27_500
    })
    .await;

    // At the stop the original is back and leaves the state file.
    d.stop().await;
    assert_eq!(plex.wan_total_kbps(), 50_000);
    assert_eq!(wan_total_in_ledger(&h), None);
    let writes = plex.wan_writes();
    assert_eq!(writes.first(), Some(&27_500), "{writes:?}");
    assert_eq!(writes.last(), Some(&50_000), "{writes:?}");
}

/// A daemon stopped without its restore leaves Plex's original in the state file;
/// `jellydemon restore` puts it back. A Plex that is down then keeps it there.
#[tokio::test]
async fn jellydemon_restore_puts_plexs_original_total_back() {
    let plex = FakePlex::new(TOKEN);
    let (plex_url, _stop) = plex.spawn().await;
    let (h, bob) = house(&plex_url, TOKEN, "").await;
    let d = h.daemon("restore_on_exit = false").await;
    crate::common::eventually("Plex gets a total", || plex.wan_total_kbps() == 55_000).await;
    limit_becomes(&h, &bob, 55 * M).await;
    d.stop().await;
    assert_eq!(plex.wan_total_kbps(), 55_000);
    assert_eq!(wan_total_in_ledger(&h), Some(0));

    plex.set_failing(true);
    let (code, out, err) = h.cli(&["restore", "--timeout", "1s"]).await;
    assert_ne!(code, 0, "{out}\n{err}");
    assert_eq!(wan_total_in_ledger(&h), Some(0), "kept while Plex fails");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "{out}\n{err}");

    plex.set_failing(false);
    let (code, out, err) = h.cli(&["restore"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(plex.wan_total_kbps(), 0, "no limit, as before");
    assert_eq!(wan_total_in_ledger(&h), None);

    let (_, out, err) = h.cli(&["check"]).await;
    assert!(
        out.contains("one claimant beside Jellyfin's remote users"),
        "{out}\n{err}"
    );
}

/// The owner's pause gives Plex its original total back and leaves it alone meanwhile;
/// resume sets its share again.
#[tokio::test]
async fn a_pause_gives_plex_its_original_total_until_resumed() {
    let plex = FakePlex::new(TOKEN);
    plex.set_wan_total_kbps(80_000);
    let (plex_url, _stop) = plex.spawn().await;
    let (h, _bob) = house(&plex_url, TOKEN, "").await;
    let d = h.daemon("poll_interval = \"1s\"").await;
    crate::common::eventually("Plex gets its share", || plex.wan_total_kbps() == 55_000).await;

    let (code, answer) = d.control(serde_json::json!({"action": "pause"})).await;
    assert_eq!(code, 200, "{answer}");
    crate::common::eventually("the original back while paused", || {
        plex.wan_total_kbps() == 80_000
    })
    .await;
    crate::common::eventually("the state file lets go of it", || {
        wan_total_in_ledger(&h).is_none()
    })
    .await;
    let writes = plex.wan_writes().len();
    // Two more plans (and reads of Plex) while paused.
    let polls = d.state().await["poll"]["polls"].as_u64().unwrap();
    d.wait_for(|s| s["paused"] == true && s["poll"]["polls"].as_u64() >= Some(polls + 2))
        .await;
    assert_eq!(plex.wan_writes().len(), writes, "left alone while paused");

    let (code, _) = d.control(serde_json::json!({"action": "resume"})).await;
    assert_eq!(code, 200);
    crate::common::eventually("its share again after resume", || {
        plex.wan_total_kbps() == 55_000
    })
    .await;
    let stop = d.stop().await;
    assert_eq!(stop.restore_failures, 0);
    assert_eq!(plex.wan_total_kbps(), 80_000);
}
