//! The originals as the planner sees them.

use std::collections::BTreeMap;

use crate::ids::UserId;

/// What the planner needs to know of the users jellydemon changed: their original limits (a
/// user's ceiling is never above its own), and the values written since. The ledger
/// (`src/adapters/ledger.rs`) keeps them and hands a copy over for each plan
/// (`Ledger::originals`), so the planner knows nothing of the file and no lock is held while it
/// plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Originals {
    users: BTreeMap<UserId, Original>,
}

/// One changed user's original and what was written since.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Original {
    original: i64,
    written: Vec<i64>,
}

impl Originals {
    /// `user` was changed by jellydemon: its `original` limit (bits/s; 0 = the server's), and
    /// the values set out to be written since, oldest first (empty after a change by hand).
    pub fn insert(&mut self, user: UserId, original: i64, written: Vec<i64>) {
        self.users.insert(user, Original { original, written });
    }
    /// `user`'s original limit, if jellydemon changed the user.
    pub fn original(&self, user: &UserId) -> Option<i64> {
        self.users.get(user).map(|o| o.original)
    }
    /// The values jellydemon set out to write for `user` since its original was recorded,
    /// oldest first (empty when none, and after a change by hand).
    pub fn written(&self, user: &UserId) -> &[i64] {
        self.users.get(user).map_or(&[], |o| o.written.as_slice())
    }
    /// Every user jellydemon changed, with its original.
    pub fn changed(&self) -> impl Iterator<Item = (&UserId, i64)> + '_ {
        self.users.iter().map(|(id, o)| (id, o.original))
    }
}
