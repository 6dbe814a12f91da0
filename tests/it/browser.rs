//! The status page in a real browser (headless Chromium) against a daemon fed by the fake
//! Jellyfin: it shows the budget beside what streams now, each remote user's limit and rate,
//! idle and local users, the last decisions in plain sentences with passes that changed
//! nothing collapsed, and a chart with a y-axis in Mbps whose lines all stay visible, in the
//! dark colour scheme, on a desktop and on a phone-sized screen; and the owner signing in and
//! pausing, resuming, pinning and reserving through the page's forms (driven over the
//! DevTools protocol, `common/cdp.rs`).
//!
//! Chromium comes from Debian (`.ci/run` installs it). Without it the test says so and passes,
//! unless `JD_TEST_REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing browser fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Harness, KEY, M, mixed_scenario};
use jellydemon::sim::fake::FakeJellyfin;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .find(|p| p.is_file())
            })
        })
}

fn headless(browser: &Path, profile: &Path, extra: &[String], url: &str) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

/// The page at `url` as headless Chromium rendered it (`--dump-dom`), without the script's own
/// text.
async fn rendered(browser: &Path, profile: &Path, url: &str) -> String {
    let (b, p, u) = (
        browser.to_path_buf(),
        profile.to_path_buf(),
        url.to_string(),
    );
    let out = tokio::task::spawn_blocking(move || headless(&b, &p, &["--dump-dom".into()], &u))
        .await
        .unwrap();
    let full = String::from_utf8_lossy(&out.stdout).into_owned();
    full.split("<script").next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_the_state_in_a_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("JD_TEST_REQUIRE_BROWSER").is_err(),
            "chromium is required (JD_TEST_REQUIRE_BROWSER is set) but not installed"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let fake = FakeJellyfin::new(KEY);
    let ids = mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h.daemon("debounce = \"50ms\"").await;
    crate::common::eventually("limits written", || h.fake.limit(&ids.alice) == 24 * M).await;
    d.wait_for(|s| s["writes"]["pending"] == 0).await;
    // Two more passes that change nothing (alice's start told twice).
    let alice_session = h
        .fake
        .sessions()
        .into_iter()
        .find(|s| s.user_id.as_deref() == Some(ids.alice.as_str()))
        .unwrap()
        .id;
    for n in [2, 3] {
        d.hook(&crate::common::event(
            "PlaybackStart",
            &ids.alice,
            &alice_session,
        ))
        .await;
        d.wait_for(|s| s["recent"].as_array().map(Vec::len) >= Some(n))
            .await;
    }
    // An override (on a user the plan leaves alone anyway): the control card lists it; on
    // loopback without a session the page offers to sign in to change it.
    let r = d
        .http
        .post(format!("{}/api/control", d.url))
        .bearer_auth(crate::common::HOOK_TOKEN)
        .json(&serde_json::json!({"action": "exempt", "user": "guest", "for": "2h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    d.wait_for(|s| s["overrides"].as_array().map(Vec::len) == Some(1))
        .await;
    let url = format!("{}/", d.url);
    let profile = tempfile::tempdir().unwrap();

    let dom = rendered(&browser, profile.path(), &url).await;
    for needle in [
        ">healthy<",
        "55 Mbps",      // the budget
        "Bob O'Brien",  // a remote user (escaped correctly: &#39; or ')
        "24 Mbps",      // alice's limit
        "2001:db8::10", // the admin's address
        "capped by the user",
        "carol",          // idle users and the LAN stream
        "<b>startup</b>", // the first decision and what triggered it
    ] {
        let found = dom.contains(needle) || dom.contains(&needle.replace('\'', "&#39;"));
        assert!(found, "{needle:?} not on the page:\n{dom}");
    }
    assert!(dom.contains("remote streamer"));
    // No [transcoding] capacity: no transcode counter.
    assert!(dom.contains("id=\"transcodes-line\" hidden"), "{dom}");
    // The control card: the override, who set it and until when; a sign-in link, no forms.
    let control = dom.split("id=\"control-card\"").nth(1).unwrap_or_default();
    let control = control.split("</section>").next().unwrap_or_default();
    assert!(control.contains("<b>exempt</b> · guest"), "{control}");
    assert!(control.contains("by api at "), "{control}");
    assert!(control.contains(", until "), "{control}");
    assert!(
        control.contains("id=\"control-signin\"><a href=\"login\">Sign in</a>"),
        "{control}"
    );
    assert!(control.contains("id=\"control-forms\" hidden"), "{control}");
    // The history view: both charts drawn from the database, the week's hours as a grid.
    let history = dom.split("id=\"history-card\"").nth(1).unwrap_or_default();
    let history = history.split("</section>").next().unwrap_or_default();
    assert!(!history.contains("No history:"), "{history}");
    assert_eq!(
        history.matches("class=\"cell\"").count(),
        7 * 24,
        "{history}"
    );
    // Where the budget comes from, in words.
    assert!(
        dom.contains("60 Mbps of upload less 5 Mbps kept free") && !dom.contains("static:"),
        "{dom}"
    );
    // On a phone the From column folds under the user's name.
    assert!(dom.contains("from 2001:db8::10"), "{dom}");
    // The chart's series can be hidden, and its window chosen.
    for id in ["legend-budget", "legend-held", "legend-rate"] {
        assert!(
            dom.contains(&format!("id=\"{id}\" aria-pressed=\"true\"")),
            "{id}: {dom}"
        );
    }
    assert!(
        dom.contains("data-seconds=\"3600\" aria-pressed=\"true\""),
        "{dom}"
    );
    assert!(
        !dom.contains("no decision yet"),
        "decisions are listed:\n{dom}"
    );
    // The headline: what streams now, beside the budget.
    assert!(
        dom.contains("streaming now · budget <span id=\"budget\">55 Mbps</span>"),
        "{dom}"
    );
    // Dark scheme for the browser's own parts (scrollbars, form controls).
    assert!(dom.contains("<meta name=\"color-scheme\" content=\"dark\">"));
    // Plain sentences; the two passes that changed nothing are one line.
    for needle in [
        "Bob O&#39;Brien: 25 Mbps, fair share 25 Mbps of 55 Mbps among 3; stream pushed up",
        "3 idle users held at 9 Mbps.",
        "<b>startup</b> · 5 changes ·",
        "3 passes (control, webhook): nothing to change",
    ] {
        let found = dom.contains(needle) || dom.contains(&needle.replace("&#39;", "'"));
        assert!(found, "{needle:?} not on the page:\n{dom}");
    }
    assert!(
        !dom.contains("change(s)") && !dom.contains("0 changes"),
        "{dom}"
    );
    // The chart: a y-axis in Mbps, and every line drawn, widest first.
    let chart = dom.split("id=\"chart\"").nth(1).unwrap_or_default();
    let labels = chart.matches("class=\"axis\"").count();
    assert!(labels >= 3, "y-axis labels: {chart}");
    assert!(
        chart.contains(">0 Mbps</text>") && chart.contains("0 Mbps</text>"),
        "{chart}"
    );
    let at = |cls: &str| {
        chart
            .find(&format!("class=\"{cls}\""))
            .unwrap_or_else(|| panic!("no {cls}: {chart}"))
    };
    assert!(
        at("line-budget") < at("line-held") && at("line-held") < at("line-rate"),
        "{chart}"
    );

    // Desktop and phone screenshots render.
    for (w, hgt) in [(1280, 1000), (412, 915)] {
        let png = profile.path().join(format!("shot-{w}.png"));
        let (b, p, u, png2) = (
            browser.clone(),
            profile.path().join(format!("p{w}")),
            url.clone(),
            png.clone(),
        );
        let out = tokio::task::spawn_blocking(move || {
            headless(
                &b,
                &p,
                &[
                    format!("--screenshot={}", png2.display()),
                    format!("--window-size={w},{hgt}"),
                ],
                &u,
            )
        })
        .await
        .unwrap();
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "screenshot {w}x{hgt}: {size} bytes; {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(dir) = std::env::var_os("JD_TEST_SCREENSHOT_DIR") {
            std::fs::copy(&png, Path::new(&dir).join(format!("status-page-{w}.png"))).unwrap();
        }
    }
    d.stop().await;
}

/// The torrent clients' card and chart lines: a real qBittorrent managed (its limit and what
/// it sends) beside a Transmission that does not answer (what is wrong).
#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_the_torrent_clients() {
    use crate::common::torrent::{Kind, PASS, Torrent};
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("JD_TEST_REQUIRE_BROWSER").is_err(),
            "chromium is required (JD_TEST_REQUIRE_BROWSER is set) but not installed"
        );
        return;
    };
    let Some(t) = Torrent::start(Kind::Qbittorrent).await else {
        return;
    };
    let (_closed, closed_port) = crate::common::refusing_port();
    let extra = format!(
        "{}\n[[downloader]]\nkind = \"transmission\"\nname = \"seedbox\"\n\
         url = \"http://127.0.0.1:{closed_port}\"\ntimeout = \"1s\"\n\
         [bandwidth.downloaders]\ninterval = \"1s\"\n",
        t.config(PASS)
    );
    let (h, _) = crate::common::torrent::streaming_house(&extra).await;
    let d = h.daemon("poll_interval = \"1s\"").await;
    d.wait_for(|s| {
        s["downloaders"][0]["limit_bps"].as_u64() == Some(4272 * 1024 * 8)
            && s["downloaders"][1]["last_error"].is_string()
    })
    .await;
    // A second plan, so that the chart has two points with the clients' limit.
    d.wait_for(|s| s["poll"]["recomputes"].as_u64() >= Some(2))
        .await;
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/", d.url);
    let dom = rendered(&browser, profile.path(), &url).await;
    let card = dom
        .split("id=\"downloaders-card\"")
        .nth(1)
        .unwrap_or_default();
    assert!(!card.starts_with(" hidden"), "{card}");
    for needle in [
        "together at most 35 Mbps: what the remote streams leave",
        "<b>qbittorrent</b>",
        "<b>35.0 Mbps</b>",
        "managed",
        "<b>seedbox</b>",
        "Connection refused",
    ] {
        assert!(card.contains(needle), "{needle:?} not in the card:\n{card}");
    }
    let chart = dom.split("id=\"chart\"").nth(1).unwrap_or_default();
    assert!(chart.contains("class=\"line-seeding\""), "{chart}");
    assert!(
        dom.contains("id=\"legend-seeding\" aria-pressed=\"true\">"),
        "{dom}"
    );
    d.stop().await;
}

#[tokio::test]
async fn the_status_page_shows_transcodes_beyond_the_capacity() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("JD_TEST_REQUIRE_BROWSER").is_err(),
            "chromium is required (JD_TEST_REQUIRE_BROWSER is set) but not installed"
        );
        return;
    };
    let fake = FakeJellyfin::new(KEY);
    crate::common::two_remuxes(&fake);
    let h = Harness::start(fake, "", "[transcoding]\ncapacity = 1").await;
    let d = h.daemon("debounce = \"50ms\"").await;
    d.wait_for(|s| s["last_decision"]["transcodes"]["beyond_capacity"] == true)
        .await;
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/", d.url);
    let dom = rendered(&browser, profile.path(), &url).await;
    assert!(
        dom.contains(
            "<span id=\"transcodes-line\"> · video transcodes <b id=\"transcodes\" \
             class=\"bad-text\">2 (the server runs 1 stream at most, beyond it)</b></span>"
        ),
        "{dom}"
    );
    assert!(
        dom.contains("the limit forces a transcode beyond capacity"),
        "{dom}"
    );
    d.stop().await;
}

/// The owner runs the house from the page: signs in, pauses (every original is back in
/// Jellyfin), resumes (the limits are applied again), pins a user, and keeps part of the
/// budget free for a few seconds, which ends by itself. Every action goes through the page's
/// own forms and its same-origin session.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_signs_in_and_runs_the_house_from_the_page() {
    use crate::common::cdp::Browser;
    use crate::common::{HOOK_TOKEN, assert_originals, eventually, limits_now};
    let Some(exe) = chromium() else {
        assert!(
            std::env::var("JD_TEST_REQUIRE_BROWSER").is_err(),
            "chromium is required (JD_TEST_REQUIRE_BROWSER is set) but not installed"
        );
        return;
    };
    let fake = FakeJellyfin::new(KEY);
    let ids = mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let originals = limits_now(&h.fake);
    let d = h.daemon("debounce = \"50ms\"").await;
    eventually("limits written", || h.fake.limit(&ids.alice) == 24 * M).await;

    let mut b = Browser::launch(&exe).await;
    let tab = b.open(&format!("{}/login", d.url)).await;
    b.wait_until(
        &tab,
        "the sign-in form",
        "document.readyState === 'complete' && !!document.querySelector('input[name=token]')",
        "document.documentElement.outerHTML",
    )
    .await;
    b.eval(
        &tab,
        &format!(
            "document.querySelector('input[name=token]').value = '{HOOK_TOKEN}'; \
             document.querySelector('form').submit()"
        ),
    )
    .await
    .unwrap();
    let forms_shown = "location.pathname === '/' && !!document.getElementById('control-forms') \
                       && !document.getElementById('control-forms').hidden";
    let card = "location.href + ': ' + (document.getElementById('control-card') || document.body).innerText";
    b.wait_until(&tab, "the controls once signed in", forms_shown, card)
        .await;

    // Pause: every original is back, and the page says so.
    b.eval(&tab, "document.getElementById('pause').click()")
        .await
        .unwrap();
    eventually("every original back", || limits_now(&h.fake) == originals).await;
    b.wait_until(
        &tab,
        "the pause",
        "document.getElementById('paused-note').textContent.startsWith('Paused') && \
         document.getElementById('overrides').innerText.includes('paused by page')",
        card,
    )
    .await;

    // Resume: the limits are applied again.
    b.eval(&tab, "document.getElementById('resume').click()")
        .await
        .unwrap();
    eventually("alice managed again", || h.fake.limit(&ids.alice) == 24 * M).await;
    b.wait_until(
        &tab,
        "no override left",
        "document.getElementById('overrides').innerText.includes('No override')",
        card,
    )
    .await;

    // Pin alice at 10 Mbps.
    b.eval(
        &tab,
        "document.getElementById('user-name').value = 'alice'; \
         document.getElementById('user-rule').value = 'pin'; \
         document.getElementById('user-value').value = '10'; \
         document.getElementById('user-apply').click()",
    )
    .await
    .unwrap();
    eventually("alice pinned", || h.fake.limit(&ids.alice) == 10 * M).await;
    b.wait_until(
        &tab,
        "the pin",
        "document.getElementById('overrides').innerText.includes('pinned at 10 Mbps · alice by page')",
        card,
    )
    .await;

    // Keep 20 Mbps free for 5 seconds: the budget shrinks, then is whole again by itself.
    b.eval(
        &tab,
        "document.getElementById('reserve-mbps').value = '20'; \
         document.getElementById('reserve-for').value = '5s'; \
         document.getElementById('reserve').click()",
    )
    .await
    .unwrap();
    b.wait_until(
        &tab,
        "the reserve",
        "document.getElementById('paused-note').textContent === '20 Mbps of 55 Mbps kept free by the owner.' \
         && document.getElementById('budget').textContent === '35 Mbps'",
        card,
    )
    .await;
    b.wait_until(
        &tab,
        "the reserve ended",
        "document.getElementById('paused-note').textContent === '' \
         && document.getElementById('budget').textContent === '55 Mbps' \
         && !document.getElementById('overrides').innerText.includes('reserved')",
        card,
    )
    .await;
    let s = d.state().await;
    assert_eq!(s["reserved_bps"], 0, "{s:#}");
    assert_eq!(s["overrides"][0]["by"], "page", "{s:#}");
    assert!(
        b.eval(&tab, "document.getElementById('control-error').textContent")
            .await
            == Ok(serde_json::json!("")),
        "the page reported an error"
    );
    d.stop().await;
    assert_originals(&h.fake, &originals);
}

/// The other media servers' card: a Plex (the fake, `src/sim/plex.rs`) taken off the budget
/// beside one that does not answer (what is wrong), and the budget's cause saying so; a
/// managed Plex, and another Jellyfin whose users are managed.
#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_the_other_media_servers() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("JD_TEST_REQUIRE_BROWSER").is_err(),
            "chromium is required (JD_TEST_REQUIRE_BROWSER is set) but not installed"
        );
        return;
    };
    let plex = jellydemon::sim::plex::FakePlex::new("plex-token-page");
    plex.add_session("anneliese", "wan", 20_000);
    let (plex_url, _stop) = plex.spawn().await;
    let (_closed, closed_port) = crate::common::refusing_port();
    // A third one, managed: its share becomes its total.
    let den = jellydemon::sim::plex::FakePlex::new("plex-token-den");
    let (den_url, _stop_den) = den.spawn().await;
    // And another Jellyfin, its one user idle.
    let loft = jellydemon::sim::fake::FakeJellyfin::new("loft-key-0123456789abcdef012345");
    loft.add_user("lena", |_| {});
    let (loft_url, _, _stop_loft) = loft.spawn().await;
    let extra = format!(
        "[[server]]\nkind = \"plex\"\nurl = \"{plex_url}\"\ntoken = \"plex-token-page\"\n\
         interval = \"1s\"\nmanage_wan_total = false\n\
         [[server]]\nkind = \"plex\"\nname = \"attic\"\nurl = \"http://127.0.0.1:{closed_port}\"\n\
         token = \"t\"\ntimeout = \"1s\"\nmanage_wan_total = false\n\
         [[server]]\nkind = \"plex\"\nname = \"den\"\nurl = \"{den_url}\"\n\
         token = \"plex-token-den\"\n\
         [[server]]\nkind = \"jellyfin\"\nname = \"loft\"\nurl = \"{loft_url}\"\n\
         api_key = \"loft-key-0123456789abcdef012345\"\n"
    );
    let (h, _) = crate::common::torrent::streaming_house(&extra).await;
    let d = h.daemon("").await;
    d.wait_for(|s| {
        s["budget_bps"] == 35 * crate::common::M
            && s["budget"]["servers"][1]["last_error"].is_string()
            && s["server_limits"][0]["limit_bps"] == 17_500_000
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let dom = rendered(&browser, profile.path(), &format!("{}/", d.url)).await;
    let card = dom.split("id=\"servers-card\"").nth(1).unwrap_or_default();
    assert!(!card.starts_with(" hidden"), "{card}");
    for needle in [
        "<b>plex</b>",
        "<td class=\"num\">20 Mbps</td>",
        "taken off the budget",
        "<b>attic</b>",
        "Connection refused",
        "<b>den</b>",
        "total limit 17.5 Mbps",
        "a newcomer's share of 35 Mbps",
        "<b>loft</b>",
        "jellyfin at http://127.0.0.1:",
        "0 playing",
        "1 user",
        "its users share the budget (named user@loft)",
    ] {
        assert!(card.contains(needle), "{needle:?} not in the card:\n{card}");
    }
    assert!(
        !card.contains("anneliese"),
        "no names of who watches: {card}"
    );
    assert!(
        dom.contains("plex streams 20 Mbps outside the house, which leaves 35 Mbps"),
        "{dom}"
    );
    d.stop().await;
}
