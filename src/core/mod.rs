//! The pure core: what a plan is made from and the rule that makes it. No I/O, no client, no
//! clock read here; the adapters (`crate::adapters`) map the outside world into these types and
//! the daemon (`crate::daemon`) carries a plan out.
//!
//! From the bottom up, each importing only those before it (and the parsed configuration,
//! `crate::config`): [`rate`] (bit rates shown as Mbps), [`media`] (a server's users and
//! sessions in the core's own terms), [`control`] (the owner's overrides: pause, pin, exempt,
//! weight, reserve), [`allocate`] (weighted water-filling) and [`plan`] (the rule that sets
//! limits, one function per step).

pub mod allocate;
pub mod control;
pub mod media;
pub mod plan;
pub mod rate;

/// The core's hash maps and sets: foldhash, seeded per process, instead of SipHash (a plan
/// hashes every user and session id several times; its keys come from the media server).
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// See [`HashMap`].
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
