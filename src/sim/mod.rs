//! A simulated Jellyfin, apart from the daemon's library (the default-on `demo` feature):
//!
//! * [`fake`]: a stateful fake Jellyfin server faithful to the real one's behaviour and traps,
//!   for the tests, the benches and the demo;
//! * [`demo`]: `jellydemon demo`, the real daemon against the fake with streamers coming and
//!   going;
//! * [`emby`]: the Emby dialect of that fake;
//! * [`effectiveness`]: the yardstick of the rule that sets limits, the real planner against
//!   Jellyfin's rate model in simulated time;
//! * [`locked`]: the most any manager could serve when streams keep their first rate (a
//!   linear program over a whole trace), its yardstick without pushes;
//! * [`plex`]: a fake Plex Media Server whose remote streams `[[server]]` reads;
//! * [`router`]: a fake OpenWrt router (rpcd) whose WAN counter the `openwrt` meter reads;
//! * [`seeder`]: a simulated qBittorrent that uploads all it is allowed.

pub mod demo;
pub mod effectiveness;
pub mod emby;
pub mod fake;
pub mod locked;
pub mod plex;
pub mod router;
pub mod seeder;
