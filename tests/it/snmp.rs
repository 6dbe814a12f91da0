//! The SNMP meter against a real agent (Debian's net-snmp `snmpd`): ifHCOutOctets follows
//! loopback traffic, a name the agent lacks lists the names it has, a wrong community is a
//! timeout that never quotes it, and the 32-bit counter when there is no 64-bit one.

use std::time::{Duration, Instant};

use secrecy::SecretString;

/// A real SNMP agent (Debian's net-snmp `snmpd`) on a free loopback port with `conf` as its
/// whole configuration; killed on drop.
struct Agent {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn snmpd() -> Option<std::path::PathBuf> {
    ["/usr/sbin/snmpd", "/usr/local/sbin/snmpd"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

/// Start an agent, or `None` (the test is skipped) when snmpd is not installed, unless
/// `JD_TEST_REQUIRE_SNMPD` is set (`.ci/run` sets it).
fn agent(conf: &str) -> Option<Agent> {
    let Some(bin) = snmpd() else {
        assert!(
            std::env::var("JD_TEST_REQUIRE_SNMPD").is_err(),
            "snmpd is required (JD_TEST_REQUIRE_SNMPD is set) but not installed"
        );
        eprintln!("skipped: snmpd is not installed (apt-get install snmpd)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snmpd.conf");
    std::fs::write(&path, conf).unwrap();
    // snmpd takes a port number, not a socket: a port picked free may be taken by another
    // test before snmpd binds it, and snmpd then exits. A few tries, each until it is bound.
    for _ in 0..4 {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(&bin)
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(&path)
            .arg(format!("udp:127.0.0.1:{port}"))
            // Its persistent files in our temp dir, not /var/lib/snmp shared with other agents.
            .env("SNMP_PERSISTENT_DIR", dir.path())
            .env("MIBS", "")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break; // it could not bind: another port
            }
            if udp_bound(port) {
                return Some(Agent {
                    child,
                    addr: format!("127.0.0.1:{port}"),
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("snmpd did not start on a free loopback port");
}

/// Whether a socket on this machine is bound to UDP `port` (`/proc/net/udp`).
fn udp_bound(port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&suffix))
        })
    })
}

const COMMUNITY: &str = "jd-community-7f3a";

fn snmp(addr: &str, community: &str, interface: &str) -> jellydemon::adapters::budget::snmp::Snmp {
    jellydemon::adapters::budget::snmp::Snmp::new(
        addr,
        SecretString::from(community.to_string()),
        interface,
        Duration::from_millis(700),
    )
}

/// Read until the agent answers (it takes a moment to start).
async fn first_read(
    m: &mut jellydemon::adapters::budget::snmp::Snmp,
) -> jellydemon::adapters::budget::meter::Counter {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match m.read().await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("the agent never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_snmp_meter_reads_a_real_agent_and_fails_clearly() {
    let Some(mut a) = agent(&format!("rocommunity {COMMUNITY} 127.0.0.1\n")) else {
        return;
    };
    let mut m = snmp(&a.addr, COMMUNITY, "lo");
    let first = first_read(&mut m).await;
    assert!(first.fresh, "the first reading is a baseline");
    assert_eq!(first.wraps_at, None, "ifHCOutOctets, a Counter64");
    assert!(m.index().is_some() && !m.only_32_bit());

    // 20 MB over loopback; the agent caches counters for a few seconds, so read until it
    // shows (the other tests' loopback traffic only adds to it).
    let sent = 20_000 * 1000u64;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sock.local_addr().unwrap();
    for _ in 0..20_000 {
        sock.send_to(&[0u8; 1000], to).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = m.read().await.unwrap();
        assert!(!c.fresh);
        if c.bytes >= first.bytes + sent {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the counter did not follow: {first:?} -> {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A name the agent does not have: the names it has are listed.
    let err = snmp(&a.addr, COMMUNITY, "wan9").read().await.unwrap_err();
    assert!(
        err.contains("no interface named \"wan9\"") && err.contains("lo"),
        "{err}"
    );
    // A wrong community gets no answer at all (v2c): a timeout, never the community quoted.
    let err = snmp(&a.addr, "wrong-community", "lo")
        .read()
        .await
        .unwrap_err();
    assert!(err.contains("no answer"), "{err}");
    assert!(
        !err.contains("wrong-community") && !err.contains(COMMUNITY),
        "{err}"
    );

    // The agent stops answering: a clear error; the next read finds the interface again.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let err = m.read().await.unwrap_err();
    assert!(err.contains("no answer"), "{err}");
    assert!(m.index().is_none(), "found again after a failure");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_64_bit_counter_the_snmp_meter_reads_the_32_bit_one() {
    // A view without ifHCOutOctets, as on an agent that only has the 32-bit counters.
    let conf = format!(
        "view no64 included .1\nview no64 excluded .1.3.6.1.2.1.31.1.1.1.10\n\
         rocommunity {COMMUNITY} 127.0.0.1 -V no64\n"
    );
    let Some(a) = agent(&conf) else {
        return;
    };
    let mut m = snmp(&a.addr, COMMUNITY, "lo");
    let c = first_read(&mut m).await;
    assert_eq!(c.wraps_at, Some(1 << 32), "ifOutOctets, a Counter32");
    assert!(m.only_32_bit());
    let c2 = m.read().await.unwrap();
    assert!(
        c2.bytes >= c.bytes || c2.bytes < (1 << 20),
        "wraps, never goes back"
    );
}
