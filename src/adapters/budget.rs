//! The budget shared among remote streams, when it follows the link: a meter reads the WAN's
//! upload byte counter at the router (`snmp`, `openwrt`) or on the gateway itself
//! (`interface`), and [`estimate`] turns the counter into the upload the rest of the house
//! uses and the budget that leaves. Without a meter the budget is static,
//! `total_upload_mbps - reserved_mbps`.

pub mod estimate;
pub mod feed;
pub mod meter;
pub mod schedule;
pub mod snmp;
pub mod sqm;
