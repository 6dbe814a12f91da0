//! Steps 6 and 7: every idle managed user at the join share, and the users jellydemon changed
//! that it no longer manages given their original back.

use std::collections::BTreeMap;

use crate::config::MAX_JELLYFIN_LIMIT_BPS;
use crate::core::HashMap;
use crate::core::allocate::{self, Claimant};
use crate::core::media::Account;
use crate::ids::UserId;

use super::reasons::{JoinReason, Reason};
use super::{Active, Context, Decision, Held, Role, kept, pinned_decisions, rule};

/// Step 6: every idle managed user at the join share, `max(floor, min(fair share with one
/// more claimant, budget - Σ h))`, beside what the streams will hold once the newcomer is
/// there (the pushable ones at most at their user's share with one more, since they are
/// pushed down when it starts).
///
/// A newcomer whose client cannot be pushed keeps its first rate for the whole item (an
/// episode, a film), so while others stream it gets the share it would have once more users
/// arrive: at least one more, or as many as streamed at once on average lately; and it leaves
/// those users at least their floors.
pub(super) fn idle_decisions(
    cx: &Context,
    active: &[Active],
    claimants: &[Claimant],
    h: &Held,
    available: u64,
    unmanaged_bps: u64,
    same: &HashMap<UserId, UserId>,
) -> Vec<Decision> {
    let b = cx.budget.budget_bps;
    let algorithm = cx.settings.bandwidth.algorithm;
    let hysteresis = cx.settings.bandwidth.hysteresis_percent;
    let expected = cx.memory.mean_claimants(cx.now);
    let phantom = Claimant {
        weight_milli: 1000,
        floor: cx.budget.min_per_user_bps,
        ceiling: MAX_JELLYFIN_LIMIT_BPS,
        demand: MAX_JELLYFIN_LIMIT_BPS,
    };
    let join_for = |newcomer: Claimant, fixed: bool| -> (u64, u64) {
        let shares = rule::with_newcomer(algorithm, claimants, newcomer, available);
        let beside: u64 = active
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                let cap = rule::per_stream(shares.next_item[i], &a.demands).max(a.bounds.floor);
                h.held(i)
                    .iter()
                    .zip(h.running(i))
                    .map(move |((h, _), r)| if r.down { (*h).min(cap) } else { *h })
            })
            .sum();
        let mut share = shares.next_item.last().copied().unwrap_or(0);
        let mut reserved = 0;
        if fixed {
            let floor_more = usize::from(!claimants.is_empty());
            let more = expected.saturating_sub(claimants.len() + 1).max(floor_more);
            let mut with = claimants.to_vec();
            with.push(newcomer);
            with.extend(std::iter::repeat_n(phantom, more));
            share = share.min(rule::next_item_share(
                algorithm,
                &with,
                available,
                claimants.len(),
            ));
            reserved = phantom.floor * more as u64;
        }
        (share, unmanaged_bps + beside + reserved)
    };
    let mut is_active = vec![false; cx.snapshot.users.len()];
    for a in active {
        is_active[a.index] = true;
    }
    let mut join_cache: HashMap<(u64, u64, u64, bool), (u64, u64)> = HashMap::default();
    let idle_users: Vec<&Account> = cx
        .snapshot
        .users
        .iter()
        .zip(is_active)
        .filter(|(u, active)| !active && cx.managed(u) && !same.contains_key(&u.id))
        .map(|(u, _)| u)
        .collect();
    let mut idle = Vec::with_capacity(idle_users.len());
    for u in crate::ids::name_sort(&idle_users, |u| u.name_str())
        .into_iter()
        .map(|i| idle_users[i])
    {
        let uid = &u.id;
        if cx.pin(u).is_some() {
            idle.extend(pinned_decisions(cx, &[(u, Default::default())]));
            continue;
        }
        let current = u.limit;
        let bounds = cx.bounds_of(u);
        let weight = cx.weight(u);
        let newcomer = Claimant {
            weight_milli: weight,
            floor: bounds.floor,
            ceiling: bounds.ceiling,
            demand: bounds.ceiling,
        };
        // Whether its client can be pushed is known from its last stream; a user never seen streaming may have such a client.
        let fixed = cx.memory.user_pushable(uid) != Some(true) || !cx.settings.daemon.push.down();
        let (with_one_more, beside) = *join_cache
            .entry((weight, bounds.floor, bounds.ceiling, fixed))
            .or_insert_with(|| join_for(newcomer, fixed));
        let (exact, term) = rule::join_share(with_one_more, b, beside, bounds.floor);
        let mut target =
            allocate::quantize(exact, cx.budget.step_bps, bounds.floor, bounds.ceiling);
        let mut reason = match term {
            _ if target == bounds.ceiling && exact > bounds.ceiling => JoinReason::Capped {
                source: bounds.source,
                ceiling: bounds.ceiling,
            },
            rule::Term::Share => JoinReason::Share {
                with_one_more,
                available,
            },
            rule::Term::Headroom => JoinReason::Headroom { beside },
            rule::Term::Floor => JoinReason::Floor { beside },
        };
        if let Some(cur) = kept(current, target, bounds, hysteresis)
            .filter(|&c| c <= target || c <= b.saturating_sub(beside))
        {
            reason = JoinReason::Kept {
                current: cur,
                hysteresis,
                share: target,
            };
            target = cur;
        }
        idle.push(Decision {
            user_id: uid.clone(),
            user_name: u.display_name(),
            role: Role::Idle,
            endpoints: Vec::new(),
            stream_rate: 0,
            streams: Vec::new(),
            current,
            target: target as i64,
            reason: Reason::Join(reason),
        });
    }
    idle
}

/// Step 7: users jellydemon changed but no longer manages get their original back.
pub(super) fn released(cx: &Context) -> Vec<Decision> {
    cx.originals
        .changed()
        .filter_map(|(uid, original)| {
            let u = cx.user(uid).filter(|u| !cx.managed(u))?;
            Some(Decision {
                user_id: uid.clone(),
                user_name: u.display_name(),
                role: Role::Release,
                endpoints: Vec::new(),
                stream_rate: 0,
                streams: Vec::new(),
                current: u.limit,
                target: original,
                reason: Reason::Released,
            })
        })
        .collect()
}

/// Each managed user of another server who is the same person as a managed `[jellyfin]`
/// server user ([`User::same_as`], `match_users_by_name`), with that user's id.
pub(super) fn same_people(cx: &Context) -> HashMap<UserId, UserId> {
    cx.snapshot
        .users
        .iter()
        .filter(|u| cx.managed(u))
        .filter_map(|u| {
            let primary = cx.user(u.same_as.as_ref()?)?;
            cx.managed(primary)
                .then(|| (u.id.clone(), primary.id.clone()))
        })
        .collect()
}

/// The decisions with one more for each of `same`'s users: the limit of the user they are
/// the same person as, written just before that user's (whose streams, on both servers, it
/// pushes after both writes).
pub(super) fn with_same_people(
    cx: &Context,
    decisions: Vec<Decision>,
    same: &HashMap<UserId, UserId>,
) -> Vec<Decision> {
    if same.is_empty() {
        return decisions;
    }
    let mut by_primary: BTreeMap<&UserId, Vec<&Account>> = BTreeMap::new();
    for (member, primary) in same {
        if let Some(u) = cx.user(member) {
            by_primary.entry(primary).or_default().push(u);
        }
    }
    let mut out = Vec::with_capacity(decisions.len() + same.len());
    for d in decisions {
        for u in by_primary.remove(&d.user_id).unwrap_or_default() {
            out.push(Decision {
                user_id: u.id.clone(),
                user_name: u.display_name(),
                role: Role::Idle,
                endpoints: Vec::new(),
                stream_rate: 0,
                streams: Vec::new(),
                current: u.limit,
                target: d.target,
                reason: Reason::SamePerson {
                    of: d.user_name.clone(),
                    reason: Box::new(d.reason.clone()),
                },
            });
        }
        out.push(d);
    }
    out
}
