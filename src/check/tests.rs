use super::*;

#[test]
fn versions() {
    assert!(version_supported("10.9.11"));
    assert!(version_supported("10.10.7"));
    assert!(version_supported("12.0.0"));
    assert!(!version_supported("10.8.13"));
    assert!(!version_supported("?"));
}
