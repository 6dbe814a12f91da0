//! When the engine plans, and why: the debounce window a webhook, a budget change, a change
//! on another server or an owner's action opens; the poll; the wake-up a plan asks for (a
//! push cooldown or the grace after a stop ends then); an override that ends. Pure: time is a
//! [`Duration`] on the caller's clock (the engine's runs from its start, the simulator's from
//! the trace's), so the daemon and the simulation (`src/sim/effectiveness.rs`) plan at the
//! same moments for the same reasons.
//!
//! The window opens with the first event and is not extended by later ones, so a steady
//! stream of events cannot postpone the plan forever; an owner's action plans at once (a
//! pause puts the originals back now). After every pass the poll is due one interval later
//! (or sooner while reads fail, see `crate::clock::backoff`).

use std::time::Duration;

/// Why a pass runs; the status page and the log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An owner's action (pause, pin, exempt ...).
    Control,
    /// The budget moved (the meter, a schedule, another media server's streams).
    Budget,
    /// What plays on another Jellyfin or Emby server changed.
    Server,
    /// An override reached its end.
    OverrideEnded,
    /// A playback start or stop.
    Webhook,
    /// The first pass.
    Startup,
    /// The wake-up the last plan asked for.
    WakeUp,
    /// The reconciliation poll.
    Poll,
}

impl Trigger {
    /// The name in the log, the status page and the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Control => "control",
            Trigger::Budget => "budget",
            Trigger::Server => "server",
            Trigger::OverrideEnded => "override ended",
            Trigger::Webhook => "webhook",
            Trigger::Startup => "startup",
            Trigger::WakeUp => "wake-up",
            Trigger::Poll => "poll",
        }
    }
}

/// The engine's timers and what opened the debounce window.
#[derive(Debug, Clone)]
pub struct Schedule {
    debounce: Duration,
    /// When the open debounce window closes.
    window: Option<Duration>,
    /// The wake-up the last plan asked for.
    wake_up: Option<Duration>,
    /// When the poll is due.
    next_poll: Duration,
    /// What opened the window (besides webhooks).
    control: bool,
    budget: bool,
    server: bool,
    /// A pass has run (the model exists).
    started: bool,
}

impl Schedule {
    /// A schedule whose first pass is due at `now` (the start-up pass).
    pub fn new(debounce: Duration, now: Duration) -> Schedule {
        Schedule {
            debounce,
            window: None,
            wake_up: None,
            next_poll: now,
            control: false,
            budget: false,
            server: false,
            started: false,
        }
    }

    fn open(&mut self, now: Duration) {
        self.window.get_or_insert(now + self.debounce);
    }

    /// A playback start or stop arrived.
    pub fn hook(&mut self, now: Duration) {
        self.open(now);
    }

    /// The budget the last plan used moved.
    pub fn budget_moved(&mut self, now: Duration) {
        self.budget = true;
        self.open(now);
    }

    /// What plays on another server changed.
    pub fn server_changed(&mut self, now: Duration) {
        self.server = true;
        self.open(now);
    }

    /// An owner's action was applied: plan at once.
    pub fn control(&mut self, now: Duration) {
        self.control = true;
        self.window = Some(now);
    }

    /// When the next pass is due: the window's end, the wake-up, `expiry` (an override's
    /// end) or the poll, whichever comes first.
    pub fn next(&self, expiry: Option<Duration>) -> Duration {
        [self.window, self.wake_up, expiry]
            .into_iter()
            .flatten()
            .fold(self.next_poll, Duration::min)
    }

    /// A pass begins at `now` (at or after [`Schedule::next`]); `expired` says whether an
    /// override just ended. Returns why, and closes the window.
    pub fn begin(&mut self, now: Duration, expired: bool) -> Trigger {
        let due = self.window.is_some_and(|w| w <= now);
        let trigger = if due && self.control {
            Trigger::Control
        } else if !self.started {
            Trigger::Startup
        } else if due && self.budget {
            Trigger::Budget
        } else if due && self.server {
            Trigger::Server
        } else if expired {
            Trigger::OverrideEnded
        } else if due {
            Trigger::Webhook
        } else if self.wake_up.is_some_and(|w| w <= now) {
            Trigger::WakeUp
        } else {
            Trigger::Poll
        };
        self.window = None;
        self.control = false;
        self.budget = false;
        self.server = false;
        trigger
    }

    /// The pass that began ended at `now`: the poll is due `poll_after` later, and the plan
    /// asked to plan again at `asked` (ignored unless it is still ahead). `planned` is false
    /// when nothing could be planned (no model yet): the next pass is still the start-up one.
    pub fn end(
        &mut self,
        now: Duration,
        poll_after: Duration,
        asked: Option<Duration>,
        planned: bool,
    ) {
        self.started |= planned;
        self.next_poll = now + poll_after;
        self.wake_up = asked.filter(|at| *at > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const DEBOUNCE: Duration = Duration::from_millis(500);
    const POLL: Duration = Duration::from_secs(30);

    fn started() -> Schedule {
        let mut s = Schedule::new(DEBOUNCE, Duration::ZERO);
        assert_eq!(
            s.next(None),
            Duration::ZERO,
            "the start-up pass is due at once"
        );
        assert_eq!(s.begin(Duration::ZERO, false), Trigger::Startup);
        s.end(Duration::ZERO, POLL, None, true);
        s
    }

    #[test]
    fn a_burst_of_webhooks_is_one_pass_one_debounce_after_the_first() {
        let mut s = started();
        assert_eq!(s.next(None), POLL);
        s.hook(10 * S);
        s.hook(10 * S + DEBOUNCE / 2);
        assert_eq!(
            s.next(None),
            10 * S + DEBOUNCE,
            "not extended by the second"
        );
        assert_eq!(s.begin(10 * S + DEBOUNCE, false), Trigger::Webhook);
        s.end(11 * S, POLL, None, true);
        assert_eq!(
            s.next(None),
            11 * S + POLL,
            "the poll is due an interval after"
        );
    }

    #[test]
    fn an_owners_action_plans_at_once_and_names_itself() {
        let mut s = started();
        s.hook(5 * S);
        s.control(5 * S + DEBOUNCE / 4);
        assert_eq!(s.next(None), 5 * S + DEBOUNCE / 4);
        assert_eq!(s.begin(5 * S + DEBOUNCE / 4, false), Trigger::Control);
    }

    #[test]
    fn the_reason_is_what_opened_the_window() {
        let mut s = started();
        s.budget_moved(S);
        assert_eq!(s.begin(S + DEBOUNCE, false), Trigger::Budget);
        s.end(2 * S, POLL, None, true);
        s.server_changed(3 * S);
        assert_eq!(s.begin(3 * S + DEBOUNCE, false), Trigger::Server);
        s.end(4 * S, POLL, None, true);
        assert_eq!(s.begin(4 * S, true), Trigger::OverrideEnded);
    }

    #[test]
    fn every_pass_before_the_first_plan_is_the_start_up() {
        let mut s = Schedule::new(DEBOUNCE, Duration::ZERO);
        s.budget_moved(Duration::ZERO);
        s.hook(Duration::ZERO);
        assert_eq!(s.begin(DEBOUNCE, true), Trigger::Startup);
        let mut s = Schedule::new(DEBOUNCE, Duration::ZERO);
        assert_eq!(s.begin(Duration::ZERO, false), Trigger::Startup);
        s.end(S, POLL, None, false);
        assert_eq!(
            s.begin(S + POLL, false),
            Trigger::Startup,
            "until a plan was made"
        );
    }

    #[test]
    fn a_plans_wake_up_comes_before_the_poll_when_still_ahead() {
        let mut s = started();
        s.end(S, POLL, Some(16 * S), true);
        assert_eq!(s.next(None), 16 * S);
        assert_eq!(s.begin(16 * S, false), Trigger::WakeUp);
        s.end(16 * S, POLL, Some(10 * S), true);
        assert_eq!(
            s.next(None),
            16 * S + POLL,
            "a wake-up in the past is dropped"
        );
        assert_eq!(s.next(Some(20 * S)), 20 * S, "an override's end");
    }
}
