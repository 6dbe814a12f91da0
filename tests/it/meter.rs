//! The meters against real and fake parts: the kernel's counters of `lo` and a fixture
//! directory (`interface`), a fake OpenWrt rpcd that follows rpcd's shapes
//! (`src/sim/router.rs`; `openwrt`: login, expired sessions, a wrong password, a PPPoE
//! redial), and the daemon whose budget follows
//! what the fake router measures, falls back to the static budget when the router stops
//! answering, and comes back. The SNMP meter's tests are in `snmp.rs`.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{Harness, KEY, M};
use jellydemon::adapters::budget::meter::{Interface, Openwrt};
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use jellydemon::sim::router::FakeRouter;

#[tokio::test]
async fn the_interface_meter_reads_lo_and_a_fixture_directory() {
    // The real loopback device: its counter grows with traffic sent over it.
    let mut lo = Interface::at(std::path::Path::new("/sys/class/net"), "lo");
    let before = lo.read().await.unwrap();
    assert!(before.wraps_at.is_none() && !before.fresh);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sock.local_addr().unwrap();
    for _ in 0..100 {
        sock.send_to(&[0u8; 1000], to).unwrap();
    }
    let after = lo.read().await.unwrap();
    assert!(
        after.bytes >= before.bytes + 100_000,
        "{before:?} -> {after:?}"
    );

    // A fixture: a counter that restarts (a reboot) reads as it is; the estimator treats the
    // decrease as a reset (src/adapters/budget/estimate.rs).
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("wan0").join("statistics");
    std::fs::create_dir_all(&stats).unwrap();
    std::fs::write(stats.join("tx_bytes"), "123456789\n").unwrap();
    let mut wan = Interface::at(dir.path(), "wan0");
    assert_eq!(wan.read().await.unwrap().bytes, 123_456_789);
    std::fs::write(stats.join("tx_bytes"), "42\n").unwrap();
    assert_eq!(wan.read().await.unwrap().bytes, 42);
    std::fs::write(stats.join("tx_bytes"), "garbage").unwrap();
    let err = wan.read().await.unwrap_err();
    assert!(err.contains("does not hold a byte count"), "{err}");
    let err = Interface::at(dir.path(), "eth9").read().await.unwrap_err();
    assert!(err.contains("no network device \"eth9\""), "{err}");
}

fn openwrt(url: &str, password: &str) -> Openwrt {
    Openwrt::new(
        url,
        "jellydemon",
        SecretString::from(password.to_string()),
        "wan",
        Duration::from_secs(2),
    )
    .unwrap()
}

#[tokio::test]
async fn the_openwrt_meter_logs_in_follows_redials_and_says_when_the_password_is_wrong() {
    let rpcd = FakeRouter::new("jellydemon", "s3cret-router");
    rpcd.set_rate(80 * M as u64);
    let url = rpcd.spawn(CancellationToken::new()).await.unwrap();
    let mut m = openwrt(&url, "s3cret-router");
    let first = m.read().await.unwrap();
    assert!(first.fresh, "the first reading is a baseline");
    assert!(first.bytes >= 1_000_000_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = m.read().await.unwrap();
    assert!(!second.fresh);
    assert!(second.bytes > first.bytes, "{first:?} {second:?}");
    assert_eq!(rpcd.logins(), 1, "one session, kept");

    // The session expires: one new login, and the reading goes on.
    rpcd.expire_session();
    let third = m.read().await.unwrap();
    assert!(third.bytes >= second.bytes && !third.fresh);
    assert_eq!(rpcd.logins(), 2);

    // A PPPoE redial: another device, a counter from 0, marked fresh.
    rpcd.redial("pppoe-wan2");
    let fourth = m.read().await.unwrap();
    assert!(fourth.fresh && fourth.bytes < third.bytes, "{fourth:?}");

    // A wrong password: said plainly, and the password never appears.
    let err = openwrt(&url, "wrong-password-123")
        .read()
        .await
        .unwrap_err();
    assert!(err.contains("wrong user name or password"), "{err}");
    assert!(
        !err.contains("wrong-password-123") && !err.contains("s3cret"),
        "{err}"
    );
    // Nothing listens: the address and the cause.
    let err = openwrt("http://127.0.0.1:9/ubus", "x")
        .read()
        .await
        .unwrap_err();
    assert!(err.contains("rpcd at http://127.0.0.1:9/ubus"), "{err}");
}

#[tokio::test]
async fn the_daemon_budget_follows_the_router_and_falls_back_when_it_fails() {
    let rpcd = FakeRouter::new("jellydemon", "s3cret-router");
    let rpcd_url = rpcd.spawn(CancellationToken::new()).await.unwrap();
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Android TV",
        Some(Playback::direct("a", Some(8 * M), None)),
    );
    // 60 Mbps, 5 reserved: a static budget of 55.
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[bandwidth.meter]\nkind = \"openwrt\"\ninterface = \"wan\"\nurl = \"{rpcd_url}\"\n\
             username = \"jellydemon\"\npassword = \"s3cret-router\"\ninterval = \"500ms\"\n\
             rise = \"1s\"\nfall = \"2s\"\nwindow = \"2s\"\nfail_after = 2\nstep_mbps = 1\n"
        ),
    )
    .await;
    // Only Jellyfin uploads: ~8.8 Mbps (8 x the 1.1 overhead).
    rpcd.set_rate(9 * M as u64);
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1h\"")
        .await;
    let s = d
        .wait_for(|s| {
            s["budget"]["source"] == "meter"
                && s["budget"]["meter"]["measured_bps"].as_u64().is_some()
        })
        .await;
    assert_eq!(
        s["budget_bps"],
        55 * M,
        "a quiet house keeps the whole budget: {s:#}"
    );
    let before = h.fake.limit(&alice);

    // A 30 Mbps backup starts: the budget leaves room for it, and the limits follow.
    rpcd.set_rate(39 * M as u64);
    let s = d
        .wait_for(|s| s["budget_bps"].as_u64().is_some_and(|b| b <= 27 * M as u64))
        .await;
    assert!(s["budget_bps"].as_u64().unwrap() >= 24 * M as u64, "{s:#}");
    assert!(
        s["budget"]["cause"]
            .as_str()
            .unwrap()
            .contains("of other upload"),
        "{s:#}"
    );
    let s = d.wait_for(|s| s["recent"][0]["trigger"] == "budget").await;
    assert!(h.fake.limit(&alice) < before, "{s:#}");
    // The chart's samples carry the measured upload and the rest of the house.
    let history: Value = serde_json::from_str(&d.text("/api/history").await).unwrap();
    let last = history["samples"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(last["measured"].as_u64().unwrap() > 30 * M as u64, "{last}");
    assert!(last["other"].as_u64().unwrap() > 20 * M as u64, "{last}");
    let metrics = d.text("/metrics").await;
    for name in [
        "jellydemon_measured_upload_bps",
        "jellydemon_other_upload_bps",
        "jellydemon_jellyfin_upload_estimate_bps",
        "jellydemon_meter_up 1",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    // The router stops answering: after two failed reads the static budget, said so.
    rpcd.set_down(true);
    let s = d
        .wait_for(|s| s["budget"]["source"] == "static, meter down")
        .await;
    assert_eq!(s["budget_bps"], 55 * M, "{s:#}");
    assert!(
        s["budget"]["meter"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{s:#}"
    );
    assert!(d.text("/metrics").await.contains("jellydemon_meter_up 0"));

    // It answers again, the backup is over: measuring again, the whole budget.
    rpcd.set_rate(9 * M as u64);
    rpcd.set_down(false);
    let s = d
        .wait_for(|s| s["budget"]["source"] == "meter" && s["budget"]["meter"]["up"] == true)
        .await;
    assert!(s["budget_bps"].as_u64().unwrap() >= 53 * M as u64, "{s:#}");
    d.stop().await;
}

/// `HH:MM:SS` of the wall clock in UTC, `secs` from now.
fn utc_in(secs: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap();
    jiff::tz::TimeZone::UTC
        .to_datetime(t)
        .strftime("%H:%M:%S")
        .to_string()
}

#[tokio::test]
async fn a_schedule_entry_changes_the_budget_when_it_starts_and_ends() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Android TV",
        Some(Playback::direct("a", Some(8 * M), None)),
    );
    // Static: 60 - 5 = 55. "calls": 25 reserved for three seconds, starting in two.
    let (from, to) = (utc_in(2), utc_in(5));
    let h = Harness::start(
        fake,
        &format!(
            "timezone = \"UTC\"\n[[bandwidth.schedule]]\nname = \"calls\"\nfrom = \"{}\"\n\
             to = \"{}\"\nreserved_mbps = 25\n",
            from, to
        ),
        "",
    )
    .await;
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1h\"")
        .await;
    let s = d.state().await;
    assert_eq!(s["budget_bps"], 55 * M, "{s:#}");
    let s = d
        .wait_for(|s| s["budget_bps"] == 35 * M && s["recent"][0]["trigger"] == "budget")
        .await;
    assert_eq!(s["budget"]["source"], "schedule", "{s:#}");
    assert!(
        s["budget"]["cause"]
            .as_str()
            .unwrap()
            .contains("schedule \"calls\" in force"),
        "{s:#}"
    );
    let s = d
        .wait_for(|s| {
            s["budget_bps"] == 55 * M && s["budget"]["cause"].as_str().unwrap().contains("ended")
        })
        .await;
    assert_eq!(s["budget"]["source"], "static", "{s:#}");
    d.stop().await;

    // The one-shot pass and check say which entry is in force.
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let whole_day = text
        .replace(&format!("from = \"{from}\""), "from = \"00:00\"")
        .replace(&format!("to = \"{to}\""), "to = \"24:00\"");
    std::fs::write(&h.config_path, whole_day).unwrap();
    let (code, out, err) = h.cli(&["reconcile", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("budget 35 Mbps (schedule \"calls\")"), "{out}");
    let (code, out, err) = h.cli(&["check"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(
            "schedule (1 entries, UTC): \"calls\" in force, total 60 Mbps, 25 Mbps reserved"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn check_reads_the_meter_twice_and_warns_about_offloading() {
    let rpcd = FakeRouter::new("jellydemon", "s3cret-router");
    rpcd.set_rate(40 * M as u64);
    let url = rpcd.spawn(CancellationToken::new()).await.unwrap();
    let fake = FakeJellyfin::new(KEY);
    fake.add_user("alice", |_| {});
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[bandwidth.meter]\nkind = \"openwrt\"\ninterface = \"wan\"\nurl = \"{url}\"\n\
             username = \"jellydemon\"\npassword = \"s3cret-router\"\ninterval = \"1s\"\n"
        ),
    )
    .await;
    let (code, out, err) = h.cli(&["check"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.contains("meter openwrt wan (pppoe-wan)"))
        .unwrap_or_else(|| panic!("{out}"));
    let mbps: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(" Mbps").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((36.0..=44.0).contains(&mbps), "{line}");
    assert!(
        out.contains("WARN OpenWrt: with (hardware) flow offloading"),
        "{out}"
    );
    assert!(!out.contains("s3cret-router") && !err.contains("s3cret-router"));

    // The router down: a failure that says the static budget applies meanwhile.
    rpcd.set_down(true);
    let (code, out, _) = h.cli(&["check"]).await;
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("HTTP 500") && out.contains("the daemon uses the static budget"),
        "{out}"
    );
}

/// `total_upload_mbps = "sqm"`: the capacity is the upload rate the router's SQM queue shapes
/// to (40 Mbps, 5 reserved: a budget of 35), `check` says so, the daemon follows a change of
/// it, and without an SQM configuration the commands say why they cannot start.
#[tokio::test]
async fn the_capacity_is_the_rate_the_routers_sqm_shapes_to() {
    let rpcd = FakeRouter::new("jellydemon", "s3cret-router");
    rpcd.set_rate(9 * M as u64);
    rpcd.set_sqm(Some(40_000));
    let url = rpcd.spawn(CancellationToken::new()).await.unwrap();
    let fake = FakeJellyfin::new(KEY);
    fake.add_user("alice", |_| {});
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[bandwidth.meter]\nkind = \"openwrt\"\ninterface = \"wan\"\nurl = \"{url}\"\n\
             username = \"jellydemon\"\npassword = \"s3cret-router\"\ninterval = \"500ms\"\n\
             sqm_interval = \"1s\"\n"
        ),
    )
    .await;
    let cfg = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace("total_upload_mbps = 60", "total_upload_mbps = \"sqm\"");
    std::fs::write(&h.config_path, &cfg).unwrap();
    let (code, out, err) = h.cli(&["check"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(
            "capacity: 40 Mbps, the upload rate of the router's SQM queue eth1 on pppoe-wan"
        ),
        "{out}"
    );
    assert!(out.contains("budget 35 Mbps"), "{out}");

    let d = h.daemon("poll_interval = \"1h\"").await;
    let s = d.state().await;
    assert_eq!(s["budget"]["static_bps"], 35 * M, "{s:#}");
    // The owner raises SQM's rate on the router: the daemon follows within sqm_interval.
    rpcd.set_sqm(Some(50_000));
    d.wait_for(|s| s["budget"]["static_bps"].as_u64() == Some(45 * M as u64))
        .await;
    d.stop().await;

    // No SQM on the router: nothing plans with a made-up capacity.
    rpcd.set_sqm(None);
    let (code, out, _) = h.cli(&["check"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("cannot read the router's SQM queue"), "{out}");
    let (code, _, err) = h.cli(&["reconcile", "--once", "--dry-run"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot read the router's SQM queue"), "{err}");

    // "sqm" needs the openwrt meter.
    let e = jellydemon::config::Settings::from_toml_str(
        "[jellyfin]\nurl = \"http://h\"\napi_key = \"k\"\n[bandwidth]\ntotal_upload_mbps = \"sqm\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("needs [bandwidth.meter] kind = \"openwrt\""),
        "{e}"
    );
}

/// On the gateway itself (`interface` meter), `"sqm"` is the bandwidth of the device's cake
/// qdisc, as `tc qdisc show` prints it (a stand-in `tc` on the PATH of the command: this
/// machine's own loopback is not shaped).
#[tokio::test]
async fn on_the_gateway_the_capacity_is_the_cake_qdiscs_bandwidth() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeJellyfin::new(KEY);
    fake.add_user("alice", |_| {});
    let h = Harness::start(
        fake,
        "",
        "[bandwidth.meter]\nkind = \"interface\"\ninterface = \"lo\"\n",
    )
    .await;
    let cfg = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace("total_upload_mbps = 60", "total_upload_mbps = \"sqm\"");
    std::fs::write(&h.config_path, &cfg).unwrap();
    let bin = h.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let tc = bin.join("tc");
    std::fs::write(
        &tc,
        "#!/bin/sh\n[ \"$*\" = \"qdisc show dev lo\" ] || exit 2\n\
         echo 'qdisc cake 8001: root refcnt 2 bandwidth 38Mbit diffserv3 triple-isolate nonat nowash no-ack-filter split-gso rtt 100ms raw overhead 0'\n",
    )
    .unwrap();
    std::fs::set_permissions(&tc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = crate::common::bin::Bin::with_config(&h.config_path, &["check"])
        .env("PATH", &path)
        .output()
        .await;
    let stdout = out.stdout;
    assert!(
        stdout.contains("capacity: 38 Mbps, the upload rate of the router's cake qdisc on lo"),
        "{stdout}"
    );
    assert!(stdout.contains("budget 33 Mbps"), "{stdout}");
}

/// With a meter, what the torrent clients upload is theirs, not the rest of the house's: a
/// seeder sending ~47 Mbps beside alice's stream leaves the budget where a quiet house has it
/// (without this the meter would take the seeding for other traffic and shrink the streams'
/// budget to its floor).
#[tokio::test]
async fn the_torrent_clients_upload_is_not_the_rest_of_the_house() {
    use jellydemon::sim::seeder::FakeSeeder;
    let stop = CancellationToken::new();
    let rpcd = FakeRouter::new("jellydemon", "s3cret-router");
    let rpcd_url = rpcd.spawn(stop.clone()).await.unwrap();
    let seeder = FakeSeeder::new();
    let seeder_url = seeder.spawn(stop.clone()).await.unwrap();
    // The 60 Mbps link: alice's 8 Mbps (x 1.1 on the wire, as jellydemon estimates it) and
    // the seeder in the room left.
    let wan = {
        let (rpcd, seeder, stop) = (rpcd.clone(), seeder.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                seeder.set_room(60_000_000 - 8_800_000);
                rpcd.set_rate(8_800_000 + seeder.rate_bps());
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Android TV",
        Some(Playback::direct("a", Some(8 * M), None)),
    );
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[bandwidth.meter]\nkind = \"openwrt\"\ninterface = \"wan\"\nurl = \"{rpcd_url}\"\n\
             username = \"jellydemon\"\npassword = \"s3cret-router\"\ninterval = \"500ms\"\n\
             rise = \"1s\"\nfall = \"2s\"\nwindow = \"2s\"\nstep_mbps = 1\n\
             [bandwidth.downloaders]\ninterval = \"500ms\"\n\
             [[downloader]]\nkind = \"qbittorrent\"\nurl = \"{seeder_url}\"\n"
        ),
    )
    .await;
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1s\"")
        .await;
    d.wait_for(|s| {
        s["downloaders"][0]["rate_bps"]
            .as_u64()
            .is_some_and(|r| r > 40 * M as u64)
    })
    .await;
    // Several meter readings while it seeds (long enough for its rise and fall windows).
    let read = rpcd.readings();
    crate::common::eventually("eight more meter readings", || rpcd.readings() >= read + 8).await;
    let s = d.state().await;
    assert!(
        s["budget_bps"].as_u64().unwrap() >= 52 * M as u64,
        "the seeding is not the house's: {s:#}"
    );
    assert!(
        s["budget"]["meter"]["other_bps"].as_u64().unwrap() <= 3 * M as u64,
        "{s:#}"
    );
    d.stop().await;
    stop.cancel();
    let _ = wan.await;
    assert_eq!(seeder.up_limit(), 0, "its original (unlimited) back");
}
