//! The container image (`packaging/container/`): started on the host network against the fake
//! Jellyfin, it resolves the server's name through DNS as in a compose network, writes limits,
//! runs as a non-root user, passes its health check, and a stop puts every original back.
//!
//! `.ci/run` builds the image with `packaging/container/build.sh` and sets `JD_TEST_IMAGE`
//! (and `JD_TEST_REQUIRE_CONTAINER=1`, so a missing image fails instead of skipping). The engine
//! is podman unless `JD_TEST_CONTAINER_ENGINE` names another.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{KEY, M, assert_originals, eventually, limits_now};
use jellydemon::sim::fake::{FakeJellyfin, Playback};

/// The image to test, or `None` (skip) when none was built.
fn image() -> Option<String> {
    match std::env::var("JD_TEST_IMAGE") {
        Ok(i) if !i.is_empty() => Some(i),
        _ => {
            assert!(
                std::env::var("JD_TEST_REQUIRE_CONTAINER").as_deref() != Ok("1"),
                "JD_TEST_REQUIRE_CONTAINER=1 but JD_TEST_IMAGE is not set"
            );
            eprintln!("skipped: no container image (set JD_TEST_IMAGE)");
            None
        }
    }
}

fn engine(args: &[&str]) -> Output {
    let engine = std::env::var("JD_TEST_CONTAINER_ENGINE").unwrap_or_else(|_| "podman".into());
    Command::new(&engine)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {engine}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Removes the container (and its anonymous state volume) however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = engine(&["rm", "-f", "-v", &self.0]);
    }
}

/// A DNS server on `addr` that answers every A question with 127.0.0.1 and every other one
/// with no answer: enough for the container's resolver to find "jellyfin" as a compose
/// network's DNS would. Runs until the process ends.
fn serve_dns(addr: SocketAddr) {
    let socket = UdpSocket::bind(addr).expect("bind the test DNS server");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if let Some(answer) = dns_answer(&buf[..n]) {
                let _ = socket.send_to(&answer, peer);
            }
        }
    });
}

fn dns_answer(q: &[u8]) -> Option<Vec<u8>> {
    // Header (12 bytes), one question: name labels, then type and class.
    let mut end = 12;
    while *q.get(end)? != 0 {
        end += 1 + *q.get(end)? as usize;
    }
    let qtype = u16::from_be_bytes([*q.get(end + 1)?, *q.get(end + 2)?]);
    let question = &q[12..end + 5];
    let is_a = qtype == 1;
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[..2]); // id
    r.extend_from_slice(&[0x81, 0x80]); // response, recursion desired and available
    r.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if is_a {
        // Name (pointer to the question), A, IN, TTL 60, 4 bytes of address.
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&Ipv4Addr::LOCALHOST.octets());
    }
    Some(r)
}

/// A port free on loopback now (the container binds it itself, on the host network).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// Multi-threaded: the engine's commands block a thread while the fake Jellyfin must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_manages_limits_as_a_non_root_user_and_restores_them_on_stop() {
    let Some(image) = image() else { return };
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |p| {
        p.insert("RemoteClientBitrateLimit".into(), 8_000_000.into());
    });
    let s = fake.add_session(Some(&alice), Some("203.0.113.7"), "Jellyfin Web", None);
    fake.start_playback(&s, Playback::direct("a film", Some(30 * M), None));
    let originals = limits_now(&fake);
    let alice_original = fake.limit(&alice);
    let (_, fake_addr, _stop_fake) = fake.spawn().await;

    // The container finds "jellyfin" through DNS, as in a compose network.
    let dns_ip = Ipv4Addr::new(127, 53, (std::process::id() % 250) as u8 + 1, 53);
    serve_dns(SocketAddr::from((dns_ip, 53)));
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(
        dir.path().join("resolv.conf"),
        format!("nameserver {dns_ip}\n"),
    )
    .unwrap();
    // The same layout as on a host: config.toml naming the key file beside it.
    std::fs::write(
        etc.join("config.toml"),
        format!(
            "[jellyfin]\nurl = \"http://jellyfin:{}\"\napi_key_file = \"/etc/jellydemon/api_key\"\n\
             [bandwidth]\ntotal_upload_mbps = 30\nmin_per_user_mbps = 2\n\
             [daemon]\nmode = \"reconcile-only\"\npoll_interval = \"1s\"\n",
            fake_addr.port()
        ),
    )
    .unwrap();
    std::fs::write(etc.join("api_key"), format!("{KEY}\n")).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let name = format!("jellydemon-test-{}-{}", std::process::id(), free_port());

    let run = engine(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-v",
        &format!("{}:/etc/jellydemon:ro", etc.display()),
        "-v",
        &format!("{}/resolv.conf:/etc/resolv.conf:ro", dir.path().display()),
        "-e",
        &format!("JELLYDEMON_DAEMON__LISTEN={listen}"),
        &image,
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let container = Container(name);
    let logs = || text(&engine(&["logs", &container.0]));

    // alice streams alone: she may take the whole budget; bob, idle, gets the join share.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.limit(&alice) == alice_original {
        assert!(
            std::time::Instant::now() < deadline,
            "no limit written\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("bob's join share written", || fake.limit(&bob) != 8_000_000).await;

    // Not root: the image says so, and the process runs so.
    let user = engine(&["inspect", "--format", "{{.Config.User}}", &container.0]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");
    let pid = engine(&["inspect", "--format", "{{.State.Pid}}", &container.0]);
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid_line}"
    );

    // The image's own health check: the binary asks /healthz (no shell, no curl).
    let health = engine(&["healthcheck", "run", &container.0]);
    assert!(health.status.success(), "{}\n{}", text(&health), logs());

    // A stop sends SIGTERM: every original comes back before the process exits 0.
    let stop = engine(&["stop", "-t", "30", &container.0]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert_originals(&fake, &originals);
    let code = engine(&["inspect", "--format", "{{.State.ExitCode}}", &container.0]);
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "{}",
        logs()
    );
    assert!(logs().contains("restored"), "{}", logs());
}

/// The README's `podman run` line (the continuation lines joined), split into arguments.
fn readme_run_args() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("\npodman run ")
        .expect("the README has a podman run example");
    let mut line = String::new();
    for l in readme[start + 1..].lines() {
        match l.strip_suffix('\\') {
            Some(part) => line.push_str(part),
            None => {
                line.push_str(l);
                break;
            }
        }
    }
    line.split_whitespace()
        .skip(2)
        .map(str::to_string)
        .collect()
}

// Multi-threaded: the engine's commands block a thread while the fake Jellyfin must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_reaches_the_jellyfin_of_the_host() {
    let Some(image) = image() else { return };
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    let s = fake.add_session(Some(&alice), Some("203.0.113.7"), "Jellyfin Web", None);
    fake.start_playback(&s, Playback::direct("a film", Some(30 * M), None));
    let originals = limits_now(&fake);
    let (url, _, _stop_fake) = fake.spawn().await;

    // The folder as the README writes it: `init` against Jellyfin on this host's loopback.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("jellydemon");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let init = crate::common::bin::Bin::with_config(
        &folder.join("config.toml"),
        &["init", "--url", &url, "--upload-mbps", "30", "--webhooks"],
    )
    .arg("--api-key-file")
    .arg(&key_file)
    .output()
    .await;
    assert_eq!(init.code, 0, "{init:?}");
    // `sudo chown -R 65532 ./jellydemon`
    for entry in std::fs::read_dir(&folder).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(65532), None).unwrap();
    }
    std::os::unix::fs::chown(&folder, Some(65532), None).unwrap();

    // The README's line, with this test's folder, port, names and image.
    let listen = format!("127.0.0.1:{}", free_port());
    let name = format!("jellydemon-readme-{}-{}", std::process::id(), free_port());
    let volume = format!("{name}-state");
    let mut args: Vec<String> = readme_run_args()
        .into_iter()
        .map(|a| {
            a.replace("./jellydemon:", &format!("{}:", folder.display()))
                .replace("127.0.0.1:8098", &listen)
                .replace("jellydemon-state:", &format!("{volume}:"))
                .replace("localhost/jellydemon:latest", &image)
        })
        .collect();
    let at = args.iter().position(|a| a == "--name").expect("--name") + 1;
    args[at] = name.clone();
    assert!(args.contains(&"--network".to_string()), "{args:?}");
    let mut run = vec!["run"];
    run.extend(args.iter().map(String::as_str));
    let started = engine(&run);
    assert!(started.status.success(), "{}", text(&started));
    let container = Container(name);
    struct Volume(String);
    impl Drop for Volume {
        fn drop(&mut self) {
            let _ = engine(&["volume", "rm", "-f", &self.0]);
        }
    }
    let _volume = Volume(volume);
    let logs = || text(&engine(&["logs", &container.0]));

    // It reaches the host's Jellyfin at 127.0.0.1 and manages the limits.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.limit(&bob) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no limit written\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = engine(&["healthcheck", "run", &container.0]);
    assert!(health.status.success(), "{}\n{}", text(&health), logs());
    // The Webhook plugin on this host reaches it where the README says.
    let hook = reqwest::Client::new()
        .post(format!("http://{listen}/hook"))
        .header(
            "X-Jellydemon-Token",
            std::fs::read_to_string(folder.join("webhook_token"))
                .unwrap()
                .trim(),
        )
        .body(crate::common::event("PlaybackStart", &alice, &s))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 202);

    let stop = engine(&["stop", "-t", "30", &container.0]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert_originals(&fake, &originals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_fails_while_jellyfin_was_never_reached() {
    let Some(image) = image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    // Nothing listens there.
    std::fs::write(
        etc.join("config.toml"),
        format!(
            "[jellyfin]\nurl = \"http://127.0.0.1:{}\"\napi_key = \"{KEY}\"\n\
             [bandwidth]\ntotal_upload_mbps = 30\n[daemon]\nmode = \"reconcile-only\"\n",
            free_port()
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(etc.join("config.toml"), Some(65532), None).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let name = format!(
        "jellydemon-unreached-{}-{}",
        std::process::id(),
        free_port()
    );
    let run = engine(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-v",
        &format!("{}:/etc/jellydemon:ro", etc.display()),
        "-e",
        &format!("JELLYDEMON_DAEMON__LISTEN={listen}"),
        &image,
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let container = Container(name);
    // Serving (the health check gets an answer), yet not healthy.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://{listen}/healthz"))
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = engine(&["healthcheck", "run", &container.0]);
    assert!(!health.status.success(), "{}", text(&health));
    let logs = text(&engine(&["logs", &container.0]));
    assert!(
        logs.contains("http://127.0.0.1:"),
        "the log names the URL:\n{logs}"
    );
}
