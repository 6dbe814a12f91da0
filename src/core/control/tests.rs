use super::*;

const ALICE: &str = "0000000000000000000000000000000a";

fn known() -> Vec<Known<'static>> {
    vec![
        Known {
            id: ALICE,
            name: "Alice",
        },
        Known {
            id: "0000000000000000000000000000000b",
            name: "bob",
        },
    ]
}

fn parse(json: &str) -> Action {
    serde_json::from_str(json).unwrap()
}

#[test]
fn actions_parse_from_the_api_body() {
    assert_eq!(
        parse(r#"{"action":"pin","user":"alice","mbps":10,"for":"2h"}"#),
        Action::Pin {
            user: "alice".into(),
            mbps: 10.0,
            for_: Some(Duration::from_secs(7200))
        }
    );
    assert_eq!(parse(r#"{"action":"pause"}"#), Action::Pause { for_: None });
    assert!(serde_json::from_str::<Action>(r#"{"action":"pause","forever":1}"#).is_err());
    assert!(serde_json::from_str::<Action>(r#"{"action":"explode"}"#).is_err());
}

#[test]
fn pins_resolve_names_in_any_case_and_ids_in_any_spelling() {
    let mut o = Overrides::default();
    let a = parse(r#"{"action":"pin","user":"ALICE","mbps":10}"#);
    assert_eq!(
        o.apply(&a, "cli", 1_000, &known()).unwrap(),
        "pin ALICE at 10 Mbps"
    );
    assert_eq!(o.user(ALICE), Some(UserRule::Pin { bps: 10_000_000 }));
    assert_eq!(o.users[ALICE].name.as_deref(), Some("Alice"));
    let w =
        parse(r#"{"action":"weight","user":"00000000-0000-0000-0000-00000000000A","weight":2}"#);
    o.apply(&w, "cli", 1_000, &known()).unwrap();
    assert_eq!(o.user(ALICE), Some(UserRule::Weight { weight: 2.0 }));
    let nobody = parse(r#"{"action":"exempt","user":"carol"}"#);
    assert_eq!(
        o.apply(&nobody, "cli", 1_000, &known()),
        Err(ControlError::UnknownUser("carol".into()))
    );
}

#[test]
fn values_out_of_range_are_refused_and_change_nothing() {
    let mut o = Overrides::default();
    for bad in [
        r#"{"action":"pin","user":"alice","mbps":0}"#,
        r#"{"action":"pin","user":"alice","mbps":-3}"#,
        r#"{"action":"pin","user":"alice","mbps":5000}"#,
        r#"{"action":"weight","user":"alice","weight":0}"#,
        r#"{"action":"weight","user":"alice","weight":1000}"#,
        r#"{"action":"reserve","mbps":40,"for":"0s"}"#,
        r#"{"action":"reserve","mbps":40,"for":"400days"}"#,
        r#"{"action":"clear","user":"bob"}"#,
    ] {
        assert!(
            matches!(
                o.apply(&parse(bad), "cli", 1_000, &known()),
                Err(ControlError::Invalid(_))
            ),
            "{bad}"
        );
    }
    assert!(o.is_empty());
    assert_eq!(
        o.apply(&parse(r#"{"action":"resume"}"#), "cli", 1_000, &known()),
        Ok("resume (it was not paused)".into())
    );
}

#[test]
fn overrides_expire_by_themselves() {
    let mut o = Overrides::default();
    o.apply(
        &parse(r#"{"action":"reserve","mbps":40,"for":"2s"}"#),
        "page from 127.0.0.1",
        10_000,
        &known(),
    )
    .unwrap();
    o.apply(&parse(r#"{"action":"pause"}"#), "cli", 10_000, &known())
        .unwrap();
    o.apply(
        &parse(r#"{"action":"exempt","user":"bob","for":"1m"}"#),
        "cli",
        10_000,
        &known(),
    )
    .unwrap();
    assert_eq!(o.reserve_bps(), 40_000_000);
    assert_eq!(o.next_expiry(), Some(12_000));
    assert!(o.expire(11_999).is_empty());
    assert_eq!(o.expire(12_000), vec!["the reserve ended"]);
    assert_eq!(o.reserve_bps(), 0);
    assert!(o.paused(), "a pause without an end stays");
    assert_eq!(o.next_expiry(), Some(70_000));
    assert_eq!(o.expire(70_000), vec!["exempt of bob ended"]);
    assert_eq!(o.next_expiry(), None);
}

#[test]
fn reserve_zero_and_clear_remove() {
    let mut o = Overrides::default();
    o.apply(
        &parse(r#"{"action":"reserve","mbps":40}"#),
        "cli",
        1,
        &known(),
    )
    .unwrap();
    o.apply(
        &parse(r#"{"action":"reserve","mbps":0}"#),
        "cli",
        2,
        &known(),
    )
    .unwrap();
    assert_eq!(o.reserve, None);
    o.apply(
        &parse(r#"{"action":"exempt","user":"bob"}"#),
        "cli",
        1,
        &known(),
    )
    .unwrap();
    // Cleared by the name it was set under, even when Jellyfin no longer has the user.
    o.apply(&parse(r#"{"action":"clear","user":"BOB"}"#), "cli", 2, &[])
        .unwrap();
    assert!(o.is_empty());
}
