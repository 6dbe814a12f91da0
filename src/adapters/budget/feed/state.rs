//! What the feed publishes: the budget in force and what it is made of, as the engine plans
//! with it and `/api/state` and the page show it.

use serde::Serialize;

/// The budget in force and what it is made of, for the engine, `/api/state` and the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetState {
    /// Shared among remote streams, bits/s.
    pub budget_bps: u64,
    /// `total_upload_mbps - reserved_mbps`, bits/s.
    pub static_bps: u64,
    /// "static", "meter", or "static, meter down".
    pub source: &'static str,
    /// Why the budget is what it is, in a sentence.
    pub cause: String,
    /// The meter, when one is configured.
    pub meter: Option<MeterView>,
    /// The other media servers (`[[server]]`).
    pub servers: Vec<ServerView>,
    /// The servers whose total limit jellydemon sets (`manage_wan_total`) and that answered
    /// in the last [`SERVER_STALE_AFTER`](super::SERVER_STALE_AFTER): claimants in the plan, not taken off the budget.
    #[serde(skip)]
    pub claims: Vec<crate::core::plan::ServerClaim>,
}

/// One other media server as the page and `/api/state` show it: counts and rates only, no
/// names of who watches what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerView {
    /// Its name (`server.name`, or its kind).
    pub name: String,
    /// `plex`.
    pub kind: &'static str,
    /// Where it is (no token).
    pub url: String,
    /// Its last read succeeded.
    pub up: bool,
    /// How many streams it sends outside the house (at the last successful read).
    pub remote_streams: Option<usize>,
    /// What they carry, bits/s (the bandwidth the server reserved for them).
    pub remote_bps: Option<u64>,
    /// Taken off the budget (without a meter, when its total is not managed; with one the
    /// meter measures it).
    pub counted: bool,
    /// Its total upload limit is set to its share of the budget (`manage_wan_total`).
    pub managed: bool,
    /// The last failure, while it fails.
    pub last_error: Option<String>,
}

/// The meter's last reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeterView {
    /// What is read ("openwrt wan (pppoe-wan) at http://…").
    pub reads: String,
    /// It answers.
    pub up: bool,
    /// The WAN's upload, bits/s.
    pub measured_bps: Option<u64>,
    /// Jellyfin's remote streams as estimated then, bits/s.
    pub jellyfin_bps: u64,
    /// The torrent clients' upload then, bits/s.
    pub downloaders_bps: u64,
    /// The rest of the house, smoothed, bits/s.
    pub other_bps: Option<u64>,
    /// The last failure, while it fails.
    pub last_error: Option<String>,
}
