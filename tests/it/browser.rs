//! The status page in a real browser (headless Chromium) against a daemon fed by the fake
//! Jellyfin: it shows the budget, each remote user's limit and rate, idle and local users, and
//! the last decisions, on a desktop and on a phone-sized screen.
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
    let url = format!("{}/", d.url);
    let profile = tempfile::tempdir().unwrap();

    let (browser2, profile2, url2) = (browser.clone(), profile.path().to_path_buf(), url.clone());
    let out = tokio::task::spawn_blocking(move || {
        headless(&browser2, &profile2, &["--dump-dom".into()], &url2)
    })
    .await
    .unwrap();
    let full = String::from_utf8_lossy(&out.stdout).into_owned();
    // What the page rendered, without the script's own text.
    let dom = full.split("<script").next().unwrap_or_default().to_string();
    for needle in [
        ">healthy<",
        "55 Mbps",                // the budget
        "Bob O'Brien",            // a remote user (escaped correctly: &#39; or ')
        "24 Mbps",                // alice's limit
        "pushed up to 20.6 Mbps", // bob's transcode raised to its source
        "2001:db8::10",           // the admin's address
        "capped by the user",
        "carol",          // idle users and the LAN stream
        "<b>startup</b>", // the first decision and what triggered it
    ] {
        let found = dom.contains(needle) || dom.contains(&needle.replace('\'', "&#39;"));
        assert!(found, "{needle:?} not on the page:\n{dom}");
    }
    assert!(dom.contains("remote streamer"));
    assert!(
        !dom.contains("no decision yet"),
        "decisions are listed:\n{dom}"
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
