use super::logging::size_bytes;
use super::*;

/// The Python project's config.example.yml, as published.
const EXAMPLE: &str = include_str!("../../tests/python-jellydemon/config.example.yml");

#[test]
fn the_published_example_converts_to_a_valid_configuration() {
    // Its key is a placeholder: refused, unless a key is given.
    let err = convert(EXAMPLE).unwrap_err().to_string();
    assert!(
        err.contains("`jellyfin.api_key`") && err.contains("placeholder"),
        "{err}"
    );
    assert!(!err.contains("your_api_key_here"), "{err}");
    let key = SecretString::from("0123456789abcdef".to_string());
    let c = convert_with_key(EXAMPLE, Some(key)).unwrap();
    assert_eq!(c.api_key.expose_secret(), "0123456789abcdef");
    assert!(!c.toml.contains("0123456789abcdef"), "{}", c.toml);
    let s = crate::config::Settings::from_toml_str(&c.toml)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    assert_eq!(s.jellyfin.url, "http://localhost:8096");
    assert_eq!(s.bandwidth.total_upload_mbps, 100.0);
    assert_eq!(s.bandwidth.reserved_mbps, 10.0);
    assert_eq!(s.bandwidth.min_per_user_mbps, 2.0);
    assert_eq!(s.bandwidth.max_per_user_mbps, Some(50.0));
    assert_eq!(s.daemon.mode, crate::config::Mode::ReconcileOnly);
    assert_eq!(s.daemon.poll_interval(), std::time::Duration::from_secs(30));
    assert_eq!(s.logging.level.as_deref(), Some("info"));
    assert_eq!(s.logging.max_file_bytes, 10 * 1024 * 1024);
    assert_eq!(s.logging.keep_files, 5);
    assert!(s.logging.anonymize);
    assert!(
        s.logging.file.is_none(),
        "a relative log file is not carried over"
    );
    // Every key of the file has a note.
    for key in [
        "jellyfin.host",
        "jellyfin.api_key",
        "network.internal_ranges",
        "network.test_mode",
        "network.test_external_ranges",
        "bandwidth.algorithm",
        "bandwidth.min_per_user",
        "bandwidth.max_per_user",
        "bandwidth.reserved_bandwidth",
        "bandwidth.total_upload_mbps",
        "daemon.update_interval",
        "daemon.log_level",
        "daemon.log_file",
        "daemon.log_max_size",
        "daemon.log_backup_count",
        "daemon.dry_run",
        "daemon.backup_user_settings",
        "daemon.anonymize_logs",
        "daemon.save_anonymization_map",
        "daemon.anonymization_map_file",
        "daemon.pid_file",
    ] {
        assert!(
            c.notes.iter().any(|(k, _)| k.starts_with(key)),
            "no note for {key}"
        );
    }
}

#[test]
fn algorithms_https_and_the_loaders_other_spellings() {
    let c = convert(
        "jellyfin: {host: \"media.example\", port: \"8920\", use_https: true, api_key: k}\n\
         bandwidth: {algorithm: demand_based, total_upload_mbps: 40, \
         equal_split: {min_per_user_mbps: 3}}\n\
         daemon: {update_interval_seconds: 45}\n",
    )
    .unwrap();
    let s = crate::config::Settings::from_toml_str(&c.toml).unwrap();
    assert_eq!(s.jellyfin.url, "https://media.example:8920");
    assert_eq!(s.bandwidth.algorithm, crate::config::Algorithm::Demand);
    assert_eq!(s.bandwidth.min_per_user_mbps, 3.0);
    assert_eq!(s.daemon.poll_interval(), std::time::Duration::from_secs(45));
    assert_eq!(
        s.network.internal_ranges,
        crate::config::InternalRangesSetting::Keyword("jellyfin".into())
    );
}

#[test]
fn hostile_files_are_clear_errors() {
    let base = "jellyfin: {host: h, api_key: k}\nbandwidth: {total_upload_mbps: 10}\n";
    assert!(convert(base).is_ok());
    for (text, expected) in [
        ("", "the file is empty"),
        ("- a\n- b\n", "expected sections of keys"),
        ("jellyfin: [\n", "not YAML"),
        (
            "bandwidth: {total_upload_mbps: 10}\n",
            "missing `jellyfin.host`",
        ),
        (
            "jellyfin: {host: h}\nbandwidth: {total_upload_mbps: 10}\n",
            "missing `jellyfin.api_key`",
        ),
        (
            "jellyfin: {host: h, api_key: k}\n",
            "missing `bandwidth.total_upload_mbps`",
        ),
        (
            &format!("{base}router: {{host: r}}\n"),
            "unknown key `router`",
        ),
        (
            &format!("{base}daemon: {{spike: 3}}\n"),
            "unknown key `daemon.spike`",
        ),
        (
            "jellyfin: {host: h, api_key: k, port: http}\nbandwidth: {total_upload_mbps: 10}\n",
            "`jellyfin.port`: expected a port number",
        ),
        (
            "jellyfin: {host: h, api_key: k}\nbandwidth: {total_upload_mbps: fast}\n",
            "`bandwidth.total_upload_mbps`: expected a number",
        ),
        (
            "jellyfin: {host: h, api_key: [k]}\nbandwidth: {total_upload_mbps: 10}\n",
            "`jellyfin.api_key`: expected a text, found a list",
        ),
        (
            "jellyfin: {host: h, api_key: k}\nbandwidth: {total_upload_mbps: 10, algorithm: fair}\n",
            "is not one of equal_split",
        ),
        (
            &format!("{base}network: {{internal_ranges: [lan]}}\n"),
            "`network.internal_ranges`",
        ),
        (
            &format!("{base}daemon: {{log_max_size: huge}}\n"),
            "`daemon.log_max_size`",
        ),
        ("jellyfin: 3\n", "`jellyfin`: expected a section"),
    ] {
        let err = convert(text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
    // A secret in a wrong place is never quoted.
    let err = convert("jellyfin: {host: h, api_key: {nested: s3cr3t}}\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn sizes() {
    assert_eq!(size_bytes("10MB"), Some(10 * 1024 * 1024));
    assert_eq!(size_bytes("512 kb"), Some(512 * 1024));
    assert_eq!(size_bytes("1048576"), Some(1_048_576));
    assert_eq!(size_bytes("1.5G"), Some(1_610_612_736));
    assert_eq!(size_bytes("lots"), None);
}
