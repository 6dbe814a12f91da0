//! `[jellyfin]` (where the server is, its API key) and `[network]` (which addresses are
//! inside the house).

use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use ipnet::IpNet;
use serde::Deserialize;

use crate::network;

use super::{ConfigError, Secret, invalid, redact_userinfo};

/// `[jellyfin]`: where the server is and how to authenticate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JellyfinSettings {
    /// Base URL, including a base path such as `/jellyfin` when Jellyfin is served under one.
    pub url: String,
    /// The API key (Dashboard -> API Keys), given inline or read from `api_key_file` at load.
    /// Prefer `api_key_file` outside of tests.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// A file holding the API key (systemd credentials, Docker secrets). Surrounding whitespace
    /// is ignored. A relative path is relative to the configuration file's directory.
    #[serde(default)]
    pub api_key_file: Option<RelativePathBuf>,
    /// Upper bound for one HTTP request to Jellyfin, so a hung server cannot stall a pass.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

pub(super) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `internal_ranges`: either the word `"jellyfin"` or a list of CIDRs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "expected \"jellyfin\" or a list of networks such as [\"192.168.1.0/24\"]"
)]
pub enum InternalRangesSetting {
    /// `"jellyfin"`: import Jellyfin's own ranges.
    Keyword(String),
    /// CIDRs such as `192.168.1.0/24`.
    List(Vec<String>),
}

impl Default for InternalRangesSetting {
    fn default() -> Self {
        InternalRangesSetting::Keyword("jellyfin".into())
    }
}

/// Where the list of internal address ranges comes from, after validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum InternalRanges {
    /// Import Jellyfin's own `LocalNetworkSubnets`, so both sides agree on who is local.
    #[default]
    FromJellyfin,
    /// A fixed list from the configuration file.
    Fixed(Vec<IpNet>),
}

impl JellyfinSettings {
    /// The URL (no user info, http or https, no query), one API key, a timeout.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            invalid(
                "jellyfin.url",
                format!("\"{}\": {e}", redact_userinfo(&self.url)),
            )
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "jellyfin.url",
                format!(
                    "must not contain a user name or password (\"{}\"): jellydemon signs in \
                     with api_key",
                    redact_userinfo(&self.url)
                ),
            ));
        }
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(
                "jellyfin.url",
                format!("scheme must be http or https, got \"{}\"", url.scheme()),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "jellyfin.url",
                "must not contain a query or fragment (the API key goes in api_key)",
            ));
        }
        // That the key is given one way only is checked before, with where each way came
        // from: `one_of_each_pair` in `src/config/errors.rs`.
        match (&self.api_key, &self.api_key_file) {
            (None, None) => {
                return Err(invalid(
                    "jellyfin.api_key",
                    "missing: set api_key, api_key_file or JELLYDEMON_JELLYFIN__API_KEY",
                ));
            }
            (Some(key), None) if key.inline().is_some_and(|k| k.trim().is_empty()) => {
                return Err(invalid("jellyfin.api_key", "is empty"));
            }
            _ => {}
        }
        if self.timeout.is_zero() {
            return Err(invalid("jellyfin.timeout", "must be greater than 0"));
        }
        Ok(())
    }
}

/// `[network]`: who counts as local.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// `"jellyfin"` (default) or a list such as `["192.168.1.0/24", "fd00::/8"]`.
    #[serde(default)]
    pub internal_ranges: InternalRangesSetting,
    /// `internal_ranges` parsed, at load ([`NetworkSettings::ranges`]).
    #[serde(skip)]
    parsed: InternalRanges,
}

impl NetworkSettings {
    /// The internal ranges in force, as parsed at load.
    pub fn ranges(&self) -> &InternalRanges {
        &self.parsed
    }

    /// Parse `internal_ranges` and keep the result for [`NetworkSettings::ranges`].
    pub(super) fn parse(&mut self) -> Result<(), ConfigError> {
        self.parsed = self.internal_ranges()?;
        Ok(())
    }

    /// `internal_ranges` parsed; the error names the key.
    pub(super) fn internal_ranges(&self) -> Result<InternalRanges, ConfigError> {
        const KEY: &str = "network.internal_ranges";
        match &self.internal_ranges {
            InternalRangesSetting::Keyword(word) if word.eq_ignore_ascii_case("jellyfin") => {
                Ok(InternalRanges::FromJellyfin)
            }
            InternalRangesSetting::Keyword(word) => Err(invalid(
                KEY,
                format!("expected \"jellyfin\" or a list of CIDRs, got \"{word}\""),
            )),
            InternalRangesSetting::List(list) => {
                let mut nets = Vec::with_capacity(list.len());
                for item in list {
                    nets.push(
                        network::parse_cidr(item)
                            .map_err(|e| invalid(KEY, format!("\"{item}\": {e}")))?,
                    );
                }
                if nets.is_empty() {
                    return Err(invalid(
                        KEY,
                        "the list is empty; every client would count as remote. Use \"jellyfin\" \
                         to import Jellyfin's LAN setting",
                    ));
                }
                Ok(InternalRanges::Fixed(nets))
            }
        }
    }
}
