//! The Jellyfin-like servers jellydemon manages users on: the `[jellyfin]` server (the
//! primary) and each `[[server]]` of kind `jellyfin` or `emby` (the members), on one budget.
//!
//! The planner, the ledger and the writer know one namespace of users and sessions. A member's
//! ids are therefore prefixed with its name (`den:` + the id the member uses, the name in
//! lower case as ids are), and its user names get `@den` appended, so that two servers' users
//! never meet: a user present on two servers is two claimants (`[users."alice@den"]` is the
//! second one's entry). The primary's ids stay as they are, so a state file written before
//! there were members keeps meaning the same users. Every request for a prefixed id goes to
//! its member with the prefix taken off.
//!
//! A member that cannot be read does not stop the others being managed: its last good read
//! stands in for it (its users keep their claim, their originals stay in the ledger), and
//! what failed is reported in its [`MemberView`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Serialize;

use super::{Client, ErrorKind, Flavor, JellyfinError, Session, User};
use crate::core::media::{Account, Playback};
use crate::ids::{SessionId, UserId, UserName};

use crate::ids::MEMBER_SEPARATOR as SEPARATOR;
pub use crate::ids::{is_member_id, member_of};

/// One `[[server]]` of kind `jellyfin` or `emby`.
struct Member {
    /// As configured.
    name: String,
    /// `name` in lower case, then [`SEPARATOR`].
    prefix: String,
    client: Client,
    /// Its users are the `[jellyfin]` server's of the same name (`match_users_by_name`).
    match_by_name: bool,
    /// The last good read, and when it was made.
    last: Mutex<Option<(MemberRead, Instant)>>,
}

/// What one member answered, already namespaced.
#[derive(Debug, Clone, Default)]
pub struct MemberRead {
    /// Its sessions.
    pub sessions: Vec<Playback>,
    /// Its users, each with its server's limit.
    pub users: Vec<Account>,
}

/// A member as the last pass found it, for `/api/state`, the page and `check`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberView {
    /// As configured.
    pub name: String,
    /// `jellyfin` or `emby`.
    pub kind: &'static str,
    /// Where it answers (without a user name or password).
    pub url: String,
    /// Whether its last read succeeded.
    pub up: bool,
    /// Its users.
    pub users: usize,
    /// How many of its sessions play something.
    pub playing: usize,
    /// Why the last read failed; the read before stands in for it meanwhile.
    pub last_error: Option<String>,
    /// How old the read in use is, seconds (0 when it was just made; `None`: never read).
    pub read_age_seconds: Option<u64>,
}

/// The primary and the members; cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    primary: Client,
    members: std::sync::Arc<[Member]>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("primary", &self.primary)
            .field(
                "members",
                &self.members.iter().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Fleet {
    /// Only the `[jellyfin]` server.
    pub fn single(primary: Client) -> Fleet {
        Fleet {
            primary,
            members: std::sync::Arc::from(Vec::new()),
        }
    }

    /// The primary and each member, by name.
    pub fn new(primary: Client, members: Vec<(String, Client)>) -> Fleet {
        Fleet::with_members(
            primary,
            members.into_iter().map(|(n, c)| (n, c, false)).collect(),
        )
    }

    /// The primary and each member: its name, client, and whether its users are matched to
    /// the primary's by name.
    fn with_members(primary: Client, members: Vec<(String, Client, bool)>) -> Fleet {
        let members = members
            .into_iter()
            .map(|(name, client, match_by_name)| Member {
                prefix: format!("{}{SEPARATOR}", name.to_lowercase()),
                name,
                client,
                match_by_name,
                last: Mutex::new(None),
            })
            .collect::<Vec<_>>();
        Fleet {
            primary,
            members: members.into(),
        }
    }

    /// Every server the configuration names, their keys read.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Fleet, FleetError> {
        let key = settings.api_key()?;
        let primary = Client::new(&settings.jellyfin.url, key, settings.jellyfin.timeout)?;
        let mut members = Vec::new();
        for (s, name) in settings
            .server
            .iter()
            .zip(crate::config::server_names(&settings.server))
            .filter(|(s, _)| s.manages_users())
        {
            let flavor = match s.kind() {
                crate::config::ServerKind::Emby => Flavor::Emby,
                _ => Flavor::Jellyfin,
            };
            let client = Client::with_flavor(flavor, &s.url, s.api_key()?, s.timeout)?;
            members.push((name, client, s.match_users_by_name()));
        }
        Ok(Fleet::with_members(primary, members))
    }

    /// The `[jellyfin]` server.
    pub fn primary(&self) -> &Client {
        &self.primary
    }

    /// Whether there is any member.
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// Each member's name and client.
    pub fn members(&self) -> impl Iterator<Item = (&str, &Client)> {
        self.members.iter().map(|m| (m.name.as_str(), &m.client))
    }

    /// The longest request timeout of any server.
    pub fn timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.client.timeout())
            .fold(self.primary.timeout(), Duration::max)
    }

    /// The server an id belongs to, and the id it uses there.
    fn route<'a>(
        &'a self,
        id: &'a str,
    ) -> Result<(&'a Client, Option<&'a Member>, &'a str), JellyfinError> {
        let Some((name, rest)) = id.split_once(SEPARATOR) else {
            return Ok((&self.primary, None, id));
        };
        match self
            .members
            .iter()
            .find(|m| m.prefix[..m.prefix.len() - 1] == *name)
        {
            Some(m) => Ok((&m.client, Some(m), rest)),
            None => Err(JellyfinError {
                method: Method::GET,
                path: String::new(),
                kind: ErrorKind::Other,
                detail: format!(
                    "no [[server]] named {name:?} any more (a user of it is in the state file): \
                     name it again so that its originals are put back"
                ),
            }),
        }
    }

    /// `GET /Users/{id}` on the user's server.
    pub async fn user(&self, id: &UserId) -> Result<User, JellyfinError> {
        let (client, member, real) = self.route(id.as_str())?;
        let user = client.user(&UserId::new(real)).await?;
        Ok(match member {
            Some(m) => m.user(user),
            None => user,
        })
    }

    /// The read-modify-write of one user's `RemoteClientBitrateLimit`, on the user's server.
    pub async fn write_remote_limit(&self, user: &User, limit: i64) -> Result<(), JellyfinError> {
        let (client, member, real) = self.route(user.id.as_str())?;
        if member.is_none() {
            return client.write_remote_limit(user, limit).await;
        }
        let mut theirs = user.clone();
        theirs.id = UserId::new(real);
        client.write_remote_limit(&theirs, limit).await
    }

    /// `SetMaxStreamingBitrate` to a session, on its server.
    pub async fn set_max_streaming_bitrate(
        &self,
        session: &SessionId,
        bps: u64,
    ) -> Result<(), JellyfinError> {
        let (client, _, real) = self.route(session.as_str())?;
        client
            .set_max_streaming_bitrate(&SessionId::new(real), bps)
            .await
    }

    /// Mark each user of a member with `match_users_by_name` whose name is a `[jellyfin]`
    /// server user's (in any case) as that user's ([`Account::same_as`]); `users` holds both
    /// servers' users, the members' namespaced.
    pub fn link_same_users(&self, users: &mut [Account]) {
        if !self.members.iter().any(|m| m.match_by_name) {
            return;
        }
        let primary: std::collections::HashMap<String, UserId> = users
            .iter()
            .filter(|u| !is_member_id(u.id.as_str()))
            .filter_map(|u| Some((u.name.as_ref()?.as_str().to_lowercase(), u.id.clone())))
            .collect();
        for u in users.iter_mut() {
            u.same_as = None;
            let Some(m) = self
                .members
                .iter()
                .find(|m| m.match_by_name && u.id.as_str().starts_with(&m.prefix))
            else {
                continue;
            };
            let suffix = format!("@{}", m.name);
            let base = u
                .name
                .as_ref()
                .and_then(|n| n.as_str().strip_suffix(&suffix))
                .map(str::to_lowercase);
            u.same_as = base.and_then(|b| primary.get(&b).cloned());
        }
    }

    /// Read every member at once: each one's sessions, users and server-wide limit, its last
    /// good read when this one fails.
    pub async fn read_members(&self) -> (MemberRead, Vec<MemberView>) {
        let reads = futures_util::future::join_all(self.members.iter().map(|m| m.read())).await;
        let mut all = MemberRead::default();
        let mut views = Vec::new();
        for (read, view) in reads {
            if let Some(r) = read {
                all.sessions.extend(r.sessions);
                all.users.extend(r.users);
            }
            views.push(view);
        }
        (all, views)
    }

    /// Each member's `/Sessions` alone (for noticing a change between passes), namespaced;
    /// `None` for one that cannot be read.
    pub async fn member_sessions(&self) -> Vec<Option<Vec<Session>>> {
        futures_util::future::join_all(self.members.iter().map(|m| async move {
            let sessions = m.client.sessions().await.ok()?;
            Some(sessions.into_iter().map(|s| m.session(s)).collect())
        }))
        .await
    }
}

impl Member {
    fn kind(&self) -> &'static str {
        match self.client.flavor() {
            Flavor::Jellyfin => "jellyfin",
            Flavor::Emby => "emby",
        }
    }

    /// Read it; the read in use (this one, or the last good one) and how it went.
    async fn read(&self) -> (Option<MemberRead>, MemberView) {
        let result = tokio::try_join!(
            self.client.sessions(),
            self.client.users(),
            self.client.server_configuration(),
        );
        let error = match result {
            Ok((sessions, users, config)) => {
                let limit = config.remote_client_bitrate_limit;
                let read = MemberRead {
                    sessions: sessions
                        .into_iter()
                        .map(|s| Playback::from(&self.session(s)))
                        .collect(),
                    users: users
                        .into_iter()
                        .map(|u| Account {
                            server_limit: Some(limit),
                            ..Account::from(&self.user(u))
                        })
                        .collect(),
                };
                *crate::sync::lock(&self.last) = Some((read, Instant::now()));
                None
            }
            Err(e) => {
                tracing::warn!(server = %self.name, "cannot read this server: {e}; its last read stands in");
                Some(e.to_string())
            }
        };
        let last = crate::sync::lock(&self.last);
        let (read, age) = match last.as_ref() {
            Some((r, at)) => (Some(r.clone()), Some(at.elapsed().as_secs())),
            None => (None, None),
        };
        let view = MemberView {
            name: self.name.clone(),
            kind: self.kind(),
            users: read.as_ref().map_or(0, |r| r.users.len()),
            playing: read
                .as_ref()
                .map_or(0, |r| r.sessions.iter().filter(|s| s.is_playing()).count()),
            url: self.client.shown_url().to_string(),
            up: error.is_none(),
            last_error: error,
            read_age_seconds: age,
        };
        (read, view)
    }

    /// One of its users in the fleet's namespace.
    fn user(&self, mut u: User) -> User {
        u.id = UserId::new(format!("{}{}", self.prefix, u.id.as_str()));
        u.name = u.name.map(|n| self.name_of(&n));
        u
    }

    /// One of its sessions in the fleet's namespace.
    fn session(&self, mut s: Session) -> Session {
        s.id = SessionId::new(format!("{}{}", self.prefix, s.id.as_str()));
        if let Some(id) = s.user_id.as_mut().filter(|id| !id.is_nil()) {
            *id = UserId::new(format!("{}{}", self.prefix, id.as_str()));
        }
        s.user_name = s.user_name.map(|n| self.name_of(&n));
        s
    }

    fn name_of(&self, n: &UserName) -> UserName {
        UserName::new(format!("{}@{}", n.as_str(), self.name))
    }
}

/// Why the servers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A key could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A client could not be built.
    #[error(transparent)]
    Jellyfin(#[from] JellyfinError),
}
