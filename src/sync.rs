//! Locking the std mutexes that hold shared state.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, taking over a poisoned lock: every change made under these locks is applied as a
/// whole, so a panic elsewhere cannot leave the value half-written.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
