//! Micro-benchmarks (criterion): allocation for 10 to 10,000 claimants per algorithm, one plan
//! for 10 to 1,000 users, webhook body parsing, and parsing a `/Sessions` answer of 1,000
//! sessions, and the ledger's durable save. Results: BENCHMARKS.md.
//! Run: `cargo bench --bench micro`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jellydemon::adapters::jellyfin::{Session, User};
use jellydemon::adapters::ledger::Ledger;
use jellydemon::config::Algorithm;
use jellydemon::core::allocate::{Claimant, allocate};
use jellydemon::core::media::{Account, Playback};
use jellydemon::core::plan::{Inputs, Memory, plan};

/// Deterministic, varied claimants: floors 2 Mbps, ceilings 5-100 Mbps, weights 1-4,
/// demands 0.3-80 Mbps.
fn claimants(n: usize) -> Vec<Claimant> {
    let mut x: u64 = 0x2545F4914F6CDD1D;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Claimant {
                weight_milli: 1000 * (1 + x % 4),
                floor: 2_000_000,
                ceiling: 5_000_000 + (x % 96) * 1_000_000,
                demand: 300_000 + (x % 80_000) * 1_000,
            }
        })
        .collect()
}

fn bench_allocate(c: &mut Criterion) {
    let mut g = c.benchmark_group("allocate");
    for n in [10usize, 100, 1_000, 10_000] {
        let cs = claimants(n);
        // A budget that binds: about a third of the ceilings.
        let budget: u64 = cs.iter().map(|c| c.ceiling).sum::<u64>() / 3;
        g.throughput(Throughput::Elements(n as u64));
        for alg in [Algorithm::Equal, Algorithm::Priority, Algorithm::Demand] {
            g.bench_with_input(BenchmarkId::new(alg.to_string(), n), &cs, |b, cs| {
                b.iter(|| allocate(alg, black_box(cs), black_box(budget)))
            });
        }
    }
    g.finish();
}

/// `n` managed users, half of them streaming from outside (remuxes, 4K, 1080p and audio; every
/// other client accepting pushes), as `GET /Users` and `GET /Sessions` return them.
fn household(n: usize) -> (Vec<User>, Vec<Session>) {
    let users = (0..n)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "Id": format!("{:032x}", 0xa000 + i),
                "Name": format!("user{i}"),
                "Policy": {"EnableRemoteAccess": true, "RemoteClientBitrateLimit": 0,
                           "AuthenticationProviderId": "a", "PasswordResetProviderId": "b"}
            }))
            .unwrap()
        })
        .collect();
    let sessions = (0..n)
        .step_by(2)
        .map(|i| {
            let source = [70_000_000, 40_000_000, 10_000_000, 320_000][i / 2 % 4];
            serde_json::from_value(serde_json::json!({
                "Id": format!("{:032x}", 0xb000 + i),
                "UserId": format!("{:032x}", 0xa000 + i),
                "RemoteEndPoint": format!("203.0.{}.{}", i / 250, i % 250 + 1),
                "Client": "Jellyfin Web",
                "DeviceName": format!("device {i}"),
                "SupportedCommands": if i % 4 == 0 { vec!["SetMaxStreamingBitrate"] } else { vec![] },
                "NowPlayingItem": {"Id": format!("{:032x}", 0xc000 + i),
                                   "MediaStreams": [{"Type": "Video", "BitRate": source}]},
                "PlayState": {"IsPaused": false}
            }))
            .unwrap()
        })
        .collect();
    (users, sessions)
}

fn bench_plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    let ranges = jellydemon::network::jellyfin_default_ranges();
    let originals = Ledger::in_memory().originals();
    let memory = Memory::default();
    for n in [10usize, 100, 1_000] {
        let (users, sessions) = household(n);
        // What a read of the server costs before the plan: its answers in the planner's terms.
        g.bench_with_input(BenchmarkId::new("inputs", n), &n, |b, _| {
            b.iter(|| {
                let users: Vec<Account> = black_box(&users).iter().map(Account::from).collect();
                let sessions: Vec<Playback> =
                    black_box(&sessions).iter().map(Playback::from).collect();
                (users, sessions)
            })
        });
        let users: Vec<Account> = users.iter().map(Account::from).collect();
        let sessions: Vec<Playback> = sessions.iter().map(Playback::from).collect();
        for alg in [Algorithm::Equal, Algorithm::Demand] {
            let settings = jellydemon::config::Settings::from_toml_str(&format!(
                "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\napi_key = \"k\"\n\
                 [bandwidth]\ntotal_upload_mbps = 1000\nreserved_mbps = 10\nalgorithm = \"{alg}\"\n"
            ))
            .unwrap();
            g.bench_with_input(BenchmarkId::new(alg.to_string(), n), &n, |b, _| {
                b.iter(|| {
                    plan(
                        black_box(&Inputs {
                            sessions: &sessions,
                            users: &users,
                            server_limit: 0,
                            ranges: &ranges,
                            budget_bps: settings.budget().budget_bps,
                            overrides: &jellydemon::core::control::Overrides::NONE,
                            servers: &[],
                        }),
                        &originals,
                        &memory,
                        std::time::Duration::ZERO,
                        &settings,
                    )
                })
            });
        }
    }
    g.finish();
}

const TEMPLATE_BODY: &str = r#"{
  "NotificationType": "PlaybackStart",
  "UserId": "4f1c2d3e-0000-1111-2222-333344445555",
  "Id": "aa11bb22cc33dd44ee55ff6677889900",
  "DeviceId": "TW96aWxsYS81LjAgKFgxMTsgTGludXggeDg2XzY0KQ11",
  "RemoteEndPoint": "203.0.113.7",
  "ItemId": "0123456789abcdef0123456789abcdef",
  "IsPaused": "False",
  "PlayMethod": "DirectPlay",
  "Audio_0_Bitrate": "640000"
}"#;

fn bench_webhook(c: &mut Criterion) {
    let mut g = c.benchmark_group("webhook");
    g.throughput(Throughput::Bytes(TEMPLATE_BODY.len() as u64));
    g.bench_function("parse_template_body", |b| {
        b.iter(|| {
            jellydemon::adapters::webhook::parse(black_box(TEMPLATE_BODY.as_bytes())).unwrap()
        })
    });
    let bare = TEMPLATE_BODY.replace("\"False\"", "False");
    g.bench_function("parse_bare_boolean_body", |b| {
        b.iter(|| jellydemon::adapters::webhook::parse(black_box(bare.as_bytes())).unwrap())
    });
    g.finish();
}

/// A `/Sessions` answer shaped like the fake's (and Jellyfin's): 1,000 sessions, half playing.
fn sessions_json(n: usize) -> String {
    let fake = jellydemon::sim::fake::FakeJellyfin::new("k");
    let user = fake.add_user("u", |_| {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..n {
        let playing = (i % 2 == 0).then(|| {
            jellydemon::sim::fake::Playback::direct("Episode", Some(8_000_000), Some(640_000))
        });
        fake.add_session(
            Some(&user),
            Some(&format!("203.0.113.{}", i % 250)),
            "Jellyfin Web",
            playing,
        );
    }
    rt.block_on(async {
        let (url, _, stop) = fake.spawn().await;
        let text = reqwest::Client::new()
            .get(format!("{url}/Sessions"))
            .header("Authorization", "MediaBrowser Token=\"k\"")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        stop.cancel();
        text
    })
}

fn bench_sessions(c: &mut Criterion) {
    let json = sessions_json(1_000);
    let mut g = c.benchmark_group("sessions");
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("parse_1000", |b| {
        b.iter(|| serde_json::from_str::<Vec<Session>>(black_box(&json)).unwrap())
    });
    g.finish();
}

/// The durable save before every policy write (`Ledger::save`: a temporary file written and
/// synced, renamed over the state file, the directory synced), with 10 users' records, in a
/// temporary directory on the machine's disk.
fn bench_ledger(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger");
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("state.json")).unwrap();
    for i in 0..10 {
        let id = jellydemon::ids::UserId::new(format!("{:032x}", 0xa000 + i));
        let name = jellydemon::ids::UserName::new(format!("user{i}"));
        let _ticket = ledger.record_intent(&id, &name, 0, 10_000_000, u64::MAX);
    }
    g.bench_function("save_10_users", |b| b.iter(|| ledger.save().unwrap()));
    g.finish();
}

criterion_group!(
    benches,
    bench_allocate,
    bench_plan,
    bench_webhook,
    bench_sessions,
    bench_ledger
);
criterion_main!(benches);
