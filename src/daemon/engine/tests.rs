use super::logic::patch;
use crate::adapters::webhook::parse;
use crate::snapshot::Snapshot;

fn fetched() -> Snapshot {
    Snapshot {
        sessions: vec![crate::core::media::Playback::from(
            &serde_json::from_value::<crate::adapters::jellyfin::Session>(serde_json::json!({
                "Id": "aa11bb22cc33dd44ee55ff6677889900",
                "UserId": "4f1c2d3e000011112222333344445555",
                "RemoteEndPoint": "203.0.113.7",
                "DeviceId": "dev-1"
            }))
            .unwrap(),
        )],
        users: vec![],
        server_limit: 0,
        members: vec![],
        ranges: vec![],
    }
}

#[test]
fn start_and_stop_patch_the_model() {
    let mut m = fetched();
    let start = parse(br#"{"NotificationType":"PlaybackStart","UserId":"4f1c2d3e-0000-1111-2222-333344445555","Id":"AA11BB22-CC33-DD44-EE55-FF6677889900","Video_0_BitRate":8000000}"#).unwrap();
    patch(&mut m, &start);
    assert!(m.sessions[0].is_playing());
    assert_eq!(m.sessions[0].rate().unwrap().bps(), 8_000_000);
    let stop = parse(br#"{"NotificationType":"PlaybackStop","UserId":"4f1c2d3e000011112222333344445555","Id":"aa11bb22cc33dd44ee55ff6677889900"}"#).unwrap();
    patch(&mut m, &stop);
    assert!(!m.sessions[0].is_playing());
}

#[test]
fn a_start_for_an_unknown_session_adds_it() {
    let mut m = fetched();
    let start = parse(br#"{"NotificationType":"PlaybackStart","UserId":"0000000000000000000000000000000a","DeviceId":"tv","RemoteEndPoint":"198.51.100.1"}"#).unwrap();
    patch(&mut m, &start);
    assert_eq!(m.sessions.len(), 2);
    assert!(m.sessions[1].is_playing());
    assert_eq!(m.sessions[1].endpoint.as_deref(), Some("198.51.100.1"));
}

mod core {
    //! The engine's core without a runtime: inputs in, effects out.

    use std::sync::Arc;
    use std::time::Duration;

    use crate::adapters::budget::feed::BudgetState;
    use crate::adapters::ledger::{Ledger, LedgerHandle};
    use crate::adapters::webhook::parse;
    use crate::config::Settings;
    use crate::core::control::Overrides;
    use crate::core::media::{Account, Playback, device_label};
    use crate::core::plan::Memory;
    use crate::daemon::engine::logic::{Core, Effect, PlanWith};
    use crate::daemon::seeders::Seeding;
    use crate::ids::{SessionId, UserId, UserName};
    use crate::snapshot::Snapshot;

    const ALICE: &str = "4f1c2d3e000011112222333344445555";

    fn settings() -> Arc<Settings> {
        Arc::new(
            Settings::from_toml_str(
                "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\napi_key = \"k\"\n\
                 [bandwidth]\ntotal_upload_mbps = 100\nreserved_mbps = 10\n\
                 [[downloader]]\nkind = \"qbittorrent\"\nurl = \"http://127.0.0.1:8080\"\n",
            )
            .unwrap(),
        )
    }

    fn budget(bps: u64) -> BudgetState {
        BudgetState {
            budget_bps: bps,
            static_bps: 90_000_000,
            source: "static",
            cause: "configured".into(),
            meter: None,
            servers: Vec::new(),
            claims: Vec::new(),
        }
    }

    /// alice (limit 8 Mbps) idle on a server with one session of hers.
    fn model() -> Snapshot {
        Snapshot {
            sessions: vec![Playback {
                id: SessionId::new("aa11bb22cc33dd44ee55ff6677889900"),
                user_id: Some(UserId::new(ALICE)),
                user_name: Some(UserName::new("alice")),
                endpoint: Some("203.0.113.7".into()),
                device: device_label(Some("Jellyfin Web"), Some("Firefox")),
                device_id: None,
                supports_push: true,
                paused: false,
                playing: None,
            }],
            users: vec![Account {
                id: UserId::new(ALICE),
                name: Some(UserName::new("alice")),
                limit: 8_000_000,
                admin: false,
                disabled: false,
                remote_access: true,
                server_limit: None,
                same_as: None,
            }],
            server_limit: 0,
            ranges: crate::network::jellyfin_default_ranges(),
            members: Vec::new(),
        }
    }

    fn plan_once(core: &mut Core, ledger: &LedgerHandle, now: Duration) -> Vec<Effect> {
        let budget = budget(90_000_000);
        core.begin(now, false, &budget);
        let with = PlanWith {
            fresh: true,
            ledger,
            overrides: &Overrides::NONE,
            budget: &budget,
            now_ms: 1_000,
            dry_run: true,
        };
        let planned = core.on_snapshot(&with, now).unwrap().unwrap();
        core.end(now, Duration::from_secs(300), planned.wake_at);
        planned.effects
    }

    #[test]
    fn nothing_is_planned_before_the_first_read() {
        let mut core = Core::new(settings(), Memory::default(), Duration::ZERO);
        assert_eq!(
            core.next(None),
            Duration::ZERO,
            "the first pass is due at once"
        );
        let ledger = LedgerHandle::new(Ledger::in_memory());
        let with = PlanWith {
            fresh: true,
            ledger: &ledger,
            overrides: &Overrides::NONE,
            budget: &budget(90_000_000),
            now_ms: 0,
            dry_run: true,
        };
        assert!(core.on_snapshot(&with, Duration::ZERO).is_none());
    }

    #[test]
    fn a_plan_hands_out_its_limits_then_its_decisions() {
        let mut core = Core::new(settings(), Memory::default(), Duration::ZERO);
        *core.model_mut() = Some(model());
        let ledger = LedgerHandle::new(Ledger::in_memory());
        let effects = plan_once(&mut core, &ledger, Duration::from_secs(1));
        let kinds: Vec<&str> = effects
            .iter()
            .map(|e| match e {
                Effect::Notify(_) => "notify",
                Effect::Streaming(_) => "streaming",
                Effect::Seeding(_) => "seeding",
                Effect::Servers(_) => "servers",
                Effect::Write(_) => "write",
                Effect::Record(_) => "record",
            })
            .collect();
        assert_eq!(
            &kinds[..5],
            ["notify", "streaming", "seeding", "servers", "write"]
        );
        let Effect::Seeding(Some(Seeding::Limit(all))) = effects[2] else {
            panic!("{:?}", effects[2]);
        };
        assert_eq!(
            all, 90_000_000,
            "nobody streams: the seeders get the budget"
        );
        let Effect::Write(decisions) = &effects[4] else {
            unreachable!()
        };
        assert_eq!(decisions.len(), 1);
        assert_eq!(decisions[0].user_id.as_str(), ALICE);
        assert_eq!(
            core.next(None),
            Duration::from_secs(301),
            "the poll an interval later"
        );
    }

    #[test]
    fn a_remote_start_makes_room_at_once_and_plans_one_debounce_later() {
        let mut core = Core::new(settings(), Memory::default(), Duration::ZERO);
        *core.model_mut() = Some(model());
        let ledger = LedgerHandle::new(Ledger::in_memory());
        plan_once(&mut core, &ledger, Duration::from_secs(1));
        let start = parse(
            br#"{"NotificationType":"PlaybackStart","UserId":"4f1c2d3e000011112222333344445555",
                 "Id":"aa11bb22cc33dd44ee55ff6677889900","RemoteEndPoint":"203.0.113.7",
                 "Video_0_BitRate":20000000}"#,
        )
        .unwrap();
        let room = core.make_room(&start);
        // 20 Mbps times the default overhead, at most alice's 8 Mbps limit.
        assert!(
            matches!(
                room,
                Some(Effect::Seeding(Some(Seeding::Limit(82_000_000))))
            ),
            "{room:?}"
        );
        let at = Duration::from_secs(10);
        core.on_hook(&start, at);
        assert_eq!(core.next(None), at + settings().daemon.debounce);
        let m = core.model().unwrap();
        assert_eq!(m.sessions[0].rate().unwrap().bps(), 20_000_000);
        assert!(
            core.make_room(&start).is_some(),
            "each start makes room again, down to the clients' minimum"
        );
    }

    #[test]
    fn the_writers_reports_reach_the_model_and_the_memory() {
        let mut core = Core::new(settings(), Memory::default(), Duration::ZERO);
        let mut m = model();
        m.sessions[0].start(Some("item1"), Some(20_000_000), None, false);
        *core.model_mut() = Some(m);
        let ledger = LedgerHandle::new(Ledger::in_memory());
        plan_once(&mut core, &ledger, Duration::from_secs(1));
        core.on_landed(&UserId::new(ALICE), 3_000_000);
        assert_eq!(core.model().unwrap().users[0].limit, 3_000_000);
        let session = SessionId::new("aa11bb22cc33dd44ee55ff6677889900");
        core.on_push_sent(&session, Duration::from_secs(5), 3_000_000);
        let memo = core.memory().stream(&session, "item1").unwrap();
        assert_eq!(memo.last_push, Some((Duration::from_secs(5), 3_000_000)));
    }

    #[test]
    fn only_a_budget_other_than_the_planned_one_asks_for_a_pass() {
        let mut core = Core::new(settings(), Memory::default(), Duration::ZERO);
        *core.model_mut() = Some(model());
        let ledger = LedgerHandle::new(Ledger::in_memory());
        plan_once(&mut core, &ledger, Duration::from_secs(1));
        let polled = core.next(None);
        core.on_budget(&budget(90_000_000), Duration::from_secs(2));
        assert_eq!(core.next(None), polled, "the same budget: nothing to do");
        core.on_budget(&budget(60_000_000), Duration::from_secs(2));
        assert!(core.next(None) < polled, "a new budget: a pass soon");
    }
}
