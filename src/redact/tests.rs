use super::*;

#[test]
fn secrets_are_removed_from_the_configuration_and_the_environment() {
    let text = r#"
# a comment quoting the key 0123456789abcdef
[jellyfin]
url = "http://admin:hunter2@jellyfin:8096"
api_key = "0123456789abcdef"
api_key_file = "api_key"
[daemon]
webhook_token = "hook-secret"
status_token = "status-secret"
[[notify]]
kind = "ntfy"
topic = "my-private-topic"
[[notify]]
kind = "discord"
url = "https://discord.com/api/webhooks/1/discord-secret"
[[notify]]
kind = "webhook"
url = "https://ha.example/x"
headers = { Authorization = "Bearer ha-secret" }
"#;
    let out = redact_config(text);
    for secret in [
        "0123456789abcdef",
        "hook-secret",
        "status-secret",
        "hunter2",
        "my-private-topic",
        "discord-secret",
        "ha-secret",
    ] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    assert!(out.contains("api_key_file = \"api_key\""), "{out}");
    assert!(out.contains("http://***@jellyfin:8096"), "{out}");
    assert!(out.contains("webhook_token = \"(removed)\""), "{out}");

    assert!(redact_config("api_key = \"x").starts_with("(not shown"));

    let env = redact_env([
        ("JELLYDEMON_JELLYFIN__API_KEY".into(), "k3y".into()),
        ("JELLYDEMON_BANDWIDTH__ALGORITHM".into(), "demand".into()),
        (
            "JELLYDEMON_JELLYFIN__API_KEY_FILE".into(),
            "/run/secrets/k".into(),
        ),
        ("HOME".into(), "/root".into()),
    ]);
    assert_eq!(
        env,
        [
            "JELLYDEMON_BANDWIDTH__ALGORITHM=demand",
            "JELLYDEMON_JELLYFIN__API_KEY=(removed)",
            "JELLYDEMON_JELLYFIN__API_KEY_FILE=/run/secrets/k",
        ]
    );
}

#[test]
fn ids_are_taken_out() {
    let known =
        |s: &str| (s == "4f1c2d3e000011112222333344445555").then(|| "UserId-001".to_string());
    assert_eq!(
        redact_guids(
            "user 4f1c2d3e-0000-1111-2222-333344445555 item AABBCCDDEEFF00112233445566778899 x",
            known
        ),
        "user UserId-001 item (id) x"
    );
    // Not a GUID: too short, too long, or glued to a word.
    let keep =
        "abc 4f1c2d3e00001111 4f1c2d3e0000111122223333444455556 x4f1c2d3e000011112222333344445555";
    assert_eq!(redact_guids(keep, |_| None), keep);
}
