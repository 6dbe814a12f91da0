//! The owner's controls of the running daemon (`src/core/control.rs`, `POST /api/control`, the
//! `pause`/`resume`/`pin`/... commands): what each does to the fake Jellyfin's limits, that
//! they survive a restart and expire by themselves, and that nobody without the status secret,
//! and no page on another site, can use them.

use crate::common::*;
use jellydemon::sim::fake::FakeJellyfin;
use serde_json::{Value, json};

fn reason_of<'a>(state: &'a Value, name: &str) -> &'a str {
    state["last_decision"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["user"] == name)
        .and_then(|d| d["reason"].as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn a_pause_puts_every_original_back_and_holds_across_a_restart_until_resumed() {
    let fake = FakeJellyfin::new(KEY);
    let m = mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let originals = limits_now(&h.fake);
    let d = h.daemon("").await;
    eventually("alice managed", || h.fake.limit(&m.alice) != 0).await;

    let (code, answer) = d.control(json!({"action": "pause"})).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["done"], "pause");
    eventually("every original back", || limits_now(&h.fake) == originals).await;
    let s = d.wait_for(|s| s["paused"] == true).await;
    assert_eq!(s["overrides"][0]["what"], "paused");
    assert_eq!(s["overrides"][0]["by"], "api");
    d.stop().await;

    // The next start keeps the pause: nothing is written.
    let d = h.daemon("").await;
    let s = d.wait_for(|s| s["paused"] == true).await;
    assert_eq!(s["overrides"][0]["what"], "paused", "{s:#}");
    assert_eq!(limits_now(&h.fake), originals);

    let (code, _) = d.control(json!({"action": "resume"})).await;
    assert_eq!(code, 200);
    eventually("alice managed again", || h.fake.limit(&m.alice) != 0).await;
    assert_eq!(d.state().await["overrides"], json!([]));
    d.stop().await;
    assert_originals(&h.fake, &originals);
}

#[tokio::test]
async fn pins_exemptions_weights_and_a_reserve_that_ends_by_itself() {
    let fake = FakeJellyfin::new(KEY);
    let m = mixed_scenario(&fake);
    let h = Harness::start(fake, "algorithm = \"priority\"", "").await;
    let d = h.daemon("").await;
    eventually("bob managed", || h.fake.limit(&m.bob) != 0).await;

    let (code, answer) = d
        .control(json!({"action": "pin", "user": "ALICE", "mbps": 7}))
        .await;
    assert_eq!(code, 200, "{answer}");
    eventually("alice pinned", || h.fake.limit(&m.alice) == 7 * M).await;
    let s = d
        .wait_for(|s| reason_of(s, "alice").starts_with("pinned"))
        .await;
    assert_eq!(reason_of(&s, "alice"), "pinned at 7 Mbps by api");
    assert_eq!(s["overrides"][0]["user"], "alice");

    let (code, _) = d
        .control(json!({"action": "exempt", "user": "Bob O'Brien"}))
        .await;
    assert_eq!(code, 200);
    eventually("bob's original back", || h.fake.limit(&m.bob) == 0).await;

    let (code, _) = d
        .control(json!({"action": "weight", "user": "admin", "weight": 3}))
        .await;
    assert_eq!(code, 200);
    let (code, answer) = d
        .control(json!({"action": "weight", "user": "nobody", "weight": 3}))
        .await;
    assert_eq!(code, 404, "{answer}");
    assert_eq!(answer["error"], "no Jellyfin user is named \"nobody\"");

    let (code, _) = d
        .control(json!({"action": "reserve", "mbps": 20, "for": "1s"}))
        .await;
    assert_eq!(code, 200);
    let s = d.wait_for(|s| s["reserved_bps"] == 20 * M).await;
    assert_eq!(
        s["last_decision"]["budget_bps"],
        35 * M,
        "55 less the 20 reserved"
    );
    // It ends by itself, and the budget is whole again.
    let s = d
        .wait_for(|s| s["reserved_bps"] == 0 && s["last_decision"]["budget_bps"] == 55 * M)
        .await;
    assert_eq!(s["overrides"].as_array().unwrap().len(), 3, "{s:#}");

    let (code, _) = d.control(json!({"action": "clear", "user": "alice"})).await;
    assert_eq!(code, 200);
    d.wait_for(|s| !reason_of(s, "alice").starts_with("pinned"))
        .await;
    d.stop().await;
    // The overrides were kept beside the state file.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(h.dir.path().join("overrides.json")).unwrap())
            .unwrap();
    assert_eq!(saved["users"].as_object().unwrap().len(), 2, "{saved:#}");
}

#[tokio::test]
async fn no_action_is_taken_without_the_secret_or_from_another_site() {
    let fake = FakeJellyfin::new(KEY);
    mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h.daemon("").await;
    let host = d.url.trim_start_matches("http://").to_string();
    // A session, as the page's sign-in form gives it.
    let signed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/login", d.url))
        .form(&[("token", HOOK_TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let actions = [
        json!({"action": "pause"}),
        json!({"action": "resume"}),
        json!({"action": "pin", "user": "alice", "mbps": 5}),
        json!({"action": "exempt", "user": "alice"}),
        json!({"action": "weight", "user": "alice", "weight": 2}),
        json!({"action": "clear", "user": "alice"}),
        json!({"action": "reserve", "mbps": 10}),
    ];
    let post = || d.http.post(format!("{}/api/control", d.url));
    for a in &actions {
        let form: Vec<(String, String)> = a
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string()))
            .collect();
        let attempts = [
            ("no secret", post().json(a)),
            ("the wrong secret", post().bearer_auth("guess").json(a)),
            (
                "a cross-site form with the session",
                post()
                    .header("cookie", &cookie)
                    .header("origin", "http://attacker.example")
                    .header("sec-fetch-site", "cross-site")
                    .form(&form),
            ),
            (
                "a cross-site JSON post with the session",
                post()
                    .header("cookie", &cookie)
                    .header("origin", "http://attacker.example")
                    .json(a),
            ),
            (
                "the session without an Origin",
                post().header("cookie", &cookie).json(a),
            ),
            (
                "the secret, marked cross-site by the browser",
                post()
                    .bearer_auth(HOOK_TOKEN)
                    .header("sec-fetch-site", "cross-site")
                    .json(a),
            ),
            (
                "a form with the session from this site",
                post()
                    .header("cookie", &cookie)
                    .header("origin", format!("http://{host}"))
                    .form(&form),
            ),
        ];
        for (what, req) in attempts {
            let r = req.send().await.unwrap();
            let code = r.status().as_u16();
            assert!(
                matches!(code, 401 | 403 | 415),
                "{what} for {a}: {code} {}",
                r.text().await.unwrap()
            );
        }
    }
    let s = d.state().await;
    assert_eq!(s["overrides"], json!([]), "{s:#}");
    assert_eq!(s["paused"], false);
    // The page itself, signed in and from this site, may.
    let r = post()
        .header("cookie", &cookie)
        .header("origin", format!("http://{host}"))
        .json(&json!({"action": "reserve", "mbps": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(d.state().await["overrides"][0]["by"], "page");
    d.stop().await;
}

#[tokio::test]
async fn the_commands_talk_to_the_running_daemon() {
    let fake = FakeJellyfin::new(KEY);
    let m = mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h.daemon("").await;
    let addr = d.url.trim_start_matches("http://").to_string();
    // The commands read the secret from the configuration, as the daemon does.
    let config = h.dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[daemon]\nwebhook_token = \"{HOOK_TOKEN}\"\n",
            std::fs::read_to_string(&h.config_path).unwrap()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--address", &addr]);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            let out = crate::common::bin::Bin::new().args(&all).output().await;
            (out.code, out.stdout, out.stderr)
        }
    };
    let (code, out, err) = run(&["pin", "alice", "6", "--for", "1h"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("pin alice at 6 Mbps for 1h\n"), "{out}");
    assert!(
        out.contains("pinned at 6 Mbps: alice (by cli, until "),
        "{out}"
    );
    eventually("alice pinned", || h.fake.limit(&m.alice) == 6 * M).await;
    let (code, out, _) = run(&["overrides"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("pinned at 6 Mbps: alice (by cli"), "{out}");
    let (code, _, err) = run(&["pin", "zed", "6"]).await;
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("the daemon refused: no Jellyfin user is named \"zed\""),
        "{err}"
    );
    let (code, out, _) = run(&["clear", "alice"]).await;
    assert_eq!(code, 0);
    assert!(
        out.ends_with("no override: every user follows the rule\n"),
        "{out}"
    );
    d.stop().await;
    // Nobody listens any more.
    let (code, _, err) = run(&["resume"]).await;
    assert_eq!(code, 8);
    assert!(err.contains("does not answer"), "{err}");
}

/// The Home Assistant configuration in README.md, performed as Home Assistant would: the REST
/// sensors' request and the fields their templates read, the switch's on, state and off
/// requests.
#[tokio::test]
async fn the_documented_home_assistant_requests_work() {
    use yaml_rust2::{Yaml, YamlLoader};
    let readme = include_str!("../../README.md");
    let block = readme
        .split("```yaml\n# jellydemon: home assistant\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the Home Assistant block in README.md");
    let fake = FakeJellyfin::new(KEY);
    mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h.daemon("").await;
    let text = block.replace("http://192.168.1.10:8098", &d.url).replace(
        "!secret jellydemon_bearer",
        &format!("\"Bearer {HOOK_TOKEN}\""),
    );
    let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
    let str_of = |y: &Yaml| y.as_str().unwrap().to_string();
    let headers = |y: &Yaml| -> Vec<(String, String)> {
        y["headers"]
            .as_hash()
            .unwrap()
            .iter()
            .map(|(k, v)| (str_of(k), str_of(v)))
            .collect()
    };
    let get = |url: String, hs: Vec<(String, String)>| {
        let mut r = d.http.get(url);
        for (k, v) in hs {
            r = r.header(k, v);
        }
        async move {
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    // The fields a template reads, e.g. value_json.last_decision.claimants.
    let field = |json: &Value, template: &str| -> Value {
        let path = template
            .split("value_json.")
            .nth(1)
            .unwrap()
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .next()
            .unwrap();
        path.split('.').fold(json.clone(), |v, k| v[k].clone())
    };

    let rest = &doc["rest"][0];
    let state = get(str_of(&rest["resource"]), headers(rest)).await;
    for sensor in rest["sensor"].as_vec().unwrap() {
        let v = field(&state, sensor["value_template"].as_str().unwrap());
        assert!(v.is_number(), "{}: {v}", str_of(&sensor["name"]));
    }
    assert_eq!(field(&state, "value_json.budget_bps"), 55 * M);

    let switch = &doc["switch"][0];
    assert_eq!(str_of(&switch["method"]), "post");
    let is_on = switch["is_on_template"].as_str().unwrap();
    for (body, on) in [("body_on", true), ("body_off", false)] {
        let mut r = d
            .http
            .post(str_of(&switch["resource"]))
            .body(str_of(&switch[body]));
        for (k, v) in headers(switch) {
            r = r.header(k, v);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{body}: {}", resp.text().await.unwrap());
        let state = d.wait_for(|s| field(s, is_on) == Value::Bool(on)).await;
        let shown = get(str_of(&switch["state_resource"]), headers(switch)).await;
        assert_eq!(field(&shown, is_on), Value::Bool(on), "{state:#}");
    }
    d.stop().await;
}

/// The overrides saved by the daemon hold for the commands that plan without it: a pass of
/// `reconcile --once` honours a pin and a pause, `check` says the daemon is paused, and
/// `report` lists the overrides with the names aliased.
#[tokio::test]
async fn reconcile_check_and_report_honour_the_saved_overrides() {
    let fake = FakeJellyfin::new(KEY);
    let m = mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let originals = limits_now(&h.fake);
    let d = h.daemon("").await;
    let (code, answer) = d
        .control(json!({"action": "pin", "user": "alice", "mbps": 7}))
        .await;
    assert_eq!(code, 200, "{answer}");
    let (code, _) = d
        .control(json!({"action": "reserve", "mbps": 5, "for": "1h"}))
        .await;
    assert_eq!(code, 200);
    d.stop().await;
    assert_originals(&h.fake, &originals);

    let (code, out, err) = h.cli(&["reconcile", "--once"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(h.fake.limit(&m.alice), 7 * M, "the pin holds: {out}");
    let (_, report, err) = h.cli(&["report", "--output", "-"]).await;
    let section = report
        .split("## the owner's overrides")
        .nth(1)
        .unwrap_or_else(|| panic!("{report}{err}"));
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    assert!(
        section.contains("5 Mbps reserved (by api, until "),
        "{section}"
    );
    assert!(section.contains("pinned at 7 Mbps: User-"), "{section}");
    assert!(!report.contains("alice"), "names aliased: {report}");
    h.cli(&["restore"]).await;
    assert_originals(&h.fake, &originals);

    // A pause: the pass writes nothing, check says so.
    let d = h.daemon("").await;
    let (code, _) = d.control(json!({"action": "pause"})).await;
    assert_eq!(code, 200);
    d.stop().await;
    let (code, out, err) = h.cli(&["reconcile", "--once"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_originals(&h.fake, &originals);
    let (_, out, _) = h.cli(&["check"]).await;
    assert!(out.contains("the daemon is paused"), "{out}");
    let (_, report, _) = h.cli(&["report", "--output", "-"]).await;
    assert!(
        report.contains("paused (by api, until cleared)"),
        "{report}"
    );
}
